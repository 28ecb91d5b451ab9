"""One global transaction over every kind of participant at once: two PostgreSQL databases
(prepared branches), an HTTP try-confirm-cancel participant and a staged file. Committed, it
all lands once; aborted by a later step, none of it does. Two processes resuming the same
crashed execution at once: one drives phase two, the other is refused."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from pipeline_harness import BINARY, RUN_TIMEOUT
from postgres_cluster import PostgresCluster
from recording_server import RecordingServer

WORKFLOW = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - stage_report:
                call: atomflow.files.write
                args:
                  path: ${args.report}
                  content: {run: "r1"}
            - register:
                call: atomflow.sql.exec
                args:
                  database: registry
                  statements:
                    - sql: INSERT INTO models (name) VALUES ($1)
                      params: ["m1"]
            - audit:
                call: atomflow.sql.exec
                args:
                  database: audit
                  statements:
                    - INSERT INTO events (what) VALUES ('registered m1')
            - reserve:
                tcc:
                  try:
                    call: http.post
                    args:
                      url: ${args.url + "/try"}
                  confirm:
                    call: http.post
                    args:
                      url: ${args.url + "/confirm"}
                  cancel:
                    call: http.post
                    args:
                      url: ${args.url + "/cancel"}
            - check:
                switch:
                  - condition: ${args.fail}
                    raise: "the release check failed"
"""


class MixedTransactionTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = PostgresCluster()
        cls.count = 0

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def setUp(self):
        MixedTransactionTest.count += 1
        n = MixedTransactionTest.count
        self.registry, self.audit = f"mixed_registry_{n}", f"mixed_audit_{n}"
        for database, table in ((self.registry, "models (name TEXT)"),
                                (self.audit, "events (what TEXT)")):
            self.cluster.query("postgres", f"CREATE DATABASE {database}")
            self.cluster.query(database, f"CREATE TABLE {table}")
        self.root = tempfile.mkdtemp(prefix="atomflow-mixed-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.workflow = os.path.join(self.root, "release.yaml")
        with open(self.workflow, "w", encoding="utf-8") as file:
            file.write(WORKFLOW)
        self.report = os.path.join(self.root, "out", "report.json")
        self.participant = RecordingServer()  # the TCC participant: every call succeeds
        self.addCleanup(self.participant.stop)
        self.env = dict(os.environ, ATOMFLOW_SLEEP_SCALE="0",
                        ATOMFLOW_DATABASE_REGISTRY=self.cluster.uri(self.registry),
                        ATOMFLOW_DATABASE_AUDIT=self.cluster.uri(self.audit))
        self.env.pop("ATOMFLOW_CRASH_AT", None)

    def run_release(self, fail, crash_at=None):
        env = dict(self.env)
        if crash_at:
            env["ATOMFLOW_CRASH_AT"] = crash_at
        argument = {"url": self.participant.url, "report": self.report, "fail": fail}
        return subprocess.run([BINARY, "run", self.workflow, "--json", "--data",
                               json.dumps(argument), "--store", "atomflow.db"],
                              cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)

    def landed(self):
        return (self.cluster.query(self.registry, "SELECT count(*) FROM models"),
                self.cluster.query(self.audit, "SELECT count(*) FROM events"),
                os.path.exists(self.report))

    def prepared(self):
        return self.cluster.query("postgres", "SELECT count(*) FROM pg_prepared_xacts")

    def test_commit_lands_every_participant_once(self):
        done = self.run_release(fail=False)

        self.assertEqual(json.loads(done.stdout)["state"], "SUCCEEDED", done.stderr)
        self.assertEqual(self.landed(), ("1", "1", True))
        with open(self.report, encoding="utf-8") as report:
            self.assertEqual(json.load(report), {"run": "r1"})
        self.assertEqual(self.participant.paths(), {"/try": 1, "/confirm": 1})
        self.assertEqual(set(self.participant.ops()), {"try", "confirm"})
        self.assertEqual(len(self.participant.gids()), 1)
        self.assertEqual(self.prepared(), "0")

    def test_abort_undoes_every_participant(self):
        done = self.run_release(fail=True)

        outcome = json.loads(done.stdout)
        self.assertEqual(outcome["state"], "FAILED", done.stderr)
        self.assertIn("TransactionAborted", outcome["error"]["tags"])
        self.assertEqual(self.landed(), ("0", "0", False))
        self.assertEqual(self.participant.paths(), {"/try": 1, "/cancel": 1})
        self.assertEqual(self.prepared(), "0")

    def test_two_resumes_at_once_drive_phase_two_once(self):
        crashed = self.run_release(fail=False, crash_at="decision")
        self.assertEqual(crashed.returncode, -signal.SIGKILL, crashed.stderr)
        execution_id = json.loads(subprocess.run(
            [BINARY, "executions", "list", "--json", "--store", "atomflow.db"], cwd=self.root,
            capture_output=True, text=True, check=True).stdout)[0]["id"]

        resumes = [subprocess.Popen([BINARY, "executions", "resume", execution_id, "--json",
                                     "--store", "atomflow.db"], cwd=self.root, env=self.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        outcomes = [resume.communicate(timeout=RUN_TIMEOUT) for resume in resumes]
        codes = sorted(resume.returncode for resume in resumes)

        # Either both saw it in turn (the second found it finished), or one was refused.
        self.assertIn(codes, ([0, 0], [0, 2]), outcomes)
        if codes == [0, 2]:
            self.assertTrue(any("another process" in err for _, err in outcomes), outcomes)
        self.assertEqual(self.landed(), ("1", "1", True))
        self.assertEqual(self.participant.paths(), {"/try": 1, "/confirm": 1})
        self.assertEqual(self.prepared(), "0")


if __name__ == "__main__":
    unittest.main()
