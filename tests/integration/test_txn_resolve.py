"""A compensation that keeps failing leaves its transaction COMPENSATION_FAILED: listed by
`atomflow txn list --state`, and ended by an operator with `atomflow txn resolve --retry` (the
compensation runs again and lands) or `--mark-compensated`."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from pipeline_harness import BINARY, RUN_TIMEOUT
from recording_server import RecordingServer

WORKFLOW = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${args.url + "/deploy"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/undeploy"}
            - smoke_test:
                raise: "smoke test failed"
"""

# A commit whose confirm keeps failing: decided COMMIT, then out of retries.
CONFIRM_WORKFLOW = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
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
"""

# A commit whose staged file cannot be published: /block puts a regular file where the
# report's folder should be, after the report was staged and prepared.
PUBLISH_WORKFLOW = """
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
                  content: "done"
            - block:
                call: http.post
                args:
                  url: ${args.url + "/block"}
"""


class FlakyUndeployServer(RecordingServer):
    """/deploy and /try succeed; /undeploy and /confirm answer 503 until healthy is set."""

    def __init__(self):
        self.healthy = threading.Event()
        super().__init__()

    def answer(self, path, nth):
        if path == "/block":
            with open(self.blocking_file, "w", encoding="utf-8") as file:
                file.write("not a folder")
        failing = path in ("/undeploy", "/confirm") and not self.healthy.is_set()
        return 503 if failing else 200


class TxnResolveTest(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="atomflow-resolve-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.store = os.path.join(self.root, "atomflow.db")
        self.server = FlakyUndeployServer()
        self.addCleanup(self.server.stop)
        path = os.path.join(self.root, "release.yaml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(WORKFLOW)
        run = self.atomflow("run", path, "--json", "--data", json.dumps({"url": self.server.url}))
        self.outcome = json.loads(run.stdout)

    def atomflow(self, *command):
        env = dict(os.environ, ATOMFLOW_SLEEP_SCALE="0")  # compensation backoff without waiting
        return subprocess.run([BINARY, *command, "--store", self.store], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)

    def transactions(self, *state):
        listed = self.atomflow("txn", "list", "--json", *state)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        return json.loads(listed.stdout)

    def test_failing_compensation_is_listed_and_retried_by_the_operator(self):
        self.assertEqual(self.outcome["state"], "FAILED")
        self.assertEqual(self.outcome["error"]["state"], "COMPENSATION_FAILED")
        failed = self.transactions("--state", "COMPENSATION_FAILED")
        self.assertEqual(len(failed), 1)
        gid = failed[0]["gid"]
        self.assertEqual([b["compensated"] for b in failed[0]["branches"]], [False])

        still_down = self.atomflow("txn", "resolve", gid, "--retry")
        self.assertEqual(still_down.returncode, 1, still_down.stderr)
        self.assertEqual(len(self.transactions("--state", "COMPENSATION_FAILED")), 1)

        self.server.healthy.set()
        resolved = self.atomflow("txn", "resolve", gid, "--retry")
        self.assertEqual(resolved.returncode, 0, resolved.stderr)
        self.assertEqual(self.transactions("--state", "COMPENSATION_FAILED"), [])
        (txn,) = self.transactions()
        self.assertEqual(txn["state"], "ABORTED")
        self.assertEqual(txn["resolution"], "compensations retried by an operator")
        self.assertEqual([b["compensated"] for b in txn["branches"]], [True])
        self.assertEqual(set(self.server.ops("/undeploy")), {"compensate"})

    def test_mark_compensated_ends_it_without_calling_anything(self):
        gid = self.transactions("--state", "COMPENSATION_FAILED")[0]["gid"]
        calls_before = len(self.server.requests)
        resolved = self.atomflow("txn", "resolve", gid, "--mark-compensated")
        self.assertEqual(resolved.returncode, 0, resolved.stderr)
        self.assertEqual(len(self.server.requests), calls_before)
        self.assertEqual(self.transactions()[0]["state"], "ABORTED")

        again = self.atomflow("txn", "resolve", gid, "--mark-compensated")
        self.assertEqual(again.returncode, 2)
        self.assertIn("only a COMPENSATION_FAILED transaction", again.stderr)

    def test_resolve_needs_one_mode_and_a_known_gid(self):
        gid = self.transactions()[0]["gid"]
        both = self.atomflow("txn", "resolve", gid, "--retry", "--mark-compensated")
        self.assertEqual(both.returncode, 2)
        unknown = self.atomflow("txn", "resolve", "no-such-gid", "--retry")
        self.assertEqual(unknown.returncode, 2)
        self.assertIn("no transaction 'no-such-gid'", unknown.stderr)
        self.assertEqual(self.transactions()[0]["state"], "COMPENSATION_FAILED")

    def test_a_commit_that_ran_out_of_retries_is_never_undone(self):
        """Regression: --retry ran the compensations of a transaction decided COMMIT, undoing
        committed work, and then called it ABORTED."""
        path = os.path.join(self.root, "confirm.yaml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(CONFIRM_WORKFLOW)
        self.atomflow("run", path, "--json", "--data", json.dumps({"url": self.server.url}))
        (stuck,) = [t for t in self.transactions("--state", "COMPENSATION_FAILED")
                    if t["decision"] == "COMMIT"]
        self.server.healthy.set()

        refused = self.atomflow("txn", "resolve", stuck["gid"], "--retry")
        self.assertEqual(refused.returncode, 2)
        self.assertIn("decided COMMIT", refused.stderr)
        self.assertEqual(self.server.paths()["/cancel"], 0)

        finished = self.atomflow("txn", "resolve", stuck["gid"], "--mark-compensated")
        self.assertEqual(finished.returncode, 0, finished.stderr)
        states = {t["gid"]: t["state"] for t in self.transactions()}
        self.assertEqual(states[stuck["gid"]], "COMMITTED")

    def test_a_publish_that_keeps_failing_gives_up_with_the_reason(self):
        """Regression: a staged file that could not be published after the COMMIT decision
        was retried forever, silently."""
        path = os.path.join(self.root, "publish.yaml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(PUBLISH_WORKFLOW)
        self.server.blocking_file = os.path.join(self.root, "reports")
        report = os.path.join(self.server.blocking_file, "report.txt")
        run = self.atomflow("run", path, "--json",
                            "--data", json.dumps({"url": self.server.url, "report": report}))

        (stuck,) = [t for t in self.transactions("--state", "COMPENSATION_FAILED")
                    if t["decision"] == "COMMIT"]
        self.assertEqual(stuck["step"], "release")
        self.assertEqual(json.loads(run.stdout)["state"], "SUCCEEDED")  # decided COMMIT
        self.assertIn("publishing the file of step 'stage_report' failed 10 times: the "
                      "transaction needs an operator", run.stderr)
        self.assertIn(f"cannot publish to {report}: {self.server.blocking_file} is not a "
                      "directory", run.stderr)
        self.assertTrue(os.path.isfile(self.server.blocking_file))

    def test_unknown_state_filter_is_refused(self):
        listed = self.atomflow("txn", "list", "--state", "BOGUS")
        self.assertEqual(listed.returncode, 2)
        self.assertIn("unknown transaction state 'BOGUS'", listed.stderr)


if __name__ == "__main__":
    unittest.main()
