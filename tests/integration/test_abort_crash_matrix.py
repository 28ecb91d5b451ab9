"""Regression: a cancel that cut a sleep short, then a crash before its `cancelled` record was
durable, left a journal whose resume replayed the sleep as finished, committed the transaction
and ended CANCELLED at the next step without compensating the branches that had completed.

Crash matrix of the abort path: a transaction of two compensable branches that both complete,
then a cancel (SIGINT during a sleep) or a failing step aborts it; atomflow is killed (SIGKILL)
at each named fault point between the cancel and the last compensation's result, resumed with
`atomflow executions resume`, and the participant must have applied every compensation exactly
once (each key at least once on the wire), the transaction must be ABORTED and the execution
CANCELLED (or FAILED with TransactionAborted).

The commit of the same transaction (every branch compensable, so the decision is not waited for
on its own) is killed before its decision is journaled, at the decision and after the step that
follows the block; resumed, it must commit once, with no compensation and no action twice."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from counting_participant import CountingParticipant
from pipeline_harness import BINARY, RUN_TIMEOUT, Outcome

# The undo calls run in reverse: undo_b first, then undo_a.
TRANSACTION = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - deploy_a:
                call: http.post
                args:
                  url: ${args.url + "/ok/deploy_a"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/undo_a"}
            - deploy_b:
                call: http.post
                args:
                  url: ${args.url + "/ok/deploy_b"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/undo_b"}
            - LAST
    - after:
        call: http.post
        args:
          url: ${args.url + "/ok/after"}
    - done:
        return: committed
"""

# The cancel arrives during the sleep, the last step of the block.
CANCEL_WORKFLOW = TRANSACTION.replace("- LAST", """- wait:
                call: sys.sleep
                args:
                  seconds: 120""")

# A definite failure (409) of the last step aborts the transaction.
FAIL_WORKFLOW = TRANSACTION.replace("- LAST", """- check:
                call: http.post
                args:
                  url: ${args.url + "/conflict/check"}""")

# A last step that succeeds: the transaction commits.
COMMIT_WORKFLOW = TRANSACTION.replace("- LAST", """- deploy_c:
                call: http.post
                args:
                  url: ${args.url + "/ok/deploy_c"}""")

# A staged file, published at commit, then a short sleep to kill the process in.
STAGED_WORKFLOW = TRANSACTION.replace("- LAST", """- stage:
                call: atomflow.files.write
                args:
                  path: ${args.target}
                  content: {model: "m1"}
            - wait:
                call: sys.sleep
                args:
                  seconds: 2""")

# Fault points on the commit path of a saga, in the order a run reaches them: every result is
# durable and the decision is not (undecided:release), the decision, the step after the block.
COMMIT_POINTS = ["undecided:release", "decision", "effect:after"]

# Fault points on the abort path, in the order a run reaches them. before_cancelled and
# cancelled are reached only by a cancel; effect:wait is the cut-short sleep's result.
ABORT_POINTS = ["decision", "abort:release", "compensate:deploy_b", "compensated:deploy_b",
                "compensate:deploy_a", "compensated:deploy_a"]
CANCEL_POINTS = ["effect:wait", "before_cancelled", "cancelled"] + ABORT_POINTS


class AbortCrashMatrix(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="atomflow-abort-crash-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.store = os.path.join(self.root, "atomflow.db")
        self.participant = CountingParticipant()
        self.addCleanup(self.participant.stop)

    def write(self, source):
        path = os.path.join(self.root, "release.yaml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(source)
        return path

    def environment(self, crash_at=None):
        env = dict(os.environ)
        env.pop("ATOMFLOW_CRASH_AT", None)
        if crash_at:
            env["ATOMFLOW_CRASH_AT"] = crash_at
        return env

    def start(self, source, crash_at):
        return subprocess.Popen(
            [BINARY, "run", self.write(source), "--json", "--store", self.store,
             "--data", json.dumps({"url": self.participant.url})],
            cwd=self.root, env=self.environment(crash_at), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def journal(self):
        if not os.path.exists(self.store):
            return []
        with sqlite3.connect(self.store) as db:
            rows = db.execute("SELECT kind, payload FROM journal_entries ORDER BY seq")
            return [(kind, payload) for kind, payload in rows]

    def execution_id(self):
        with sqlite3.connect(self.store) as db:
            return db.execute("SELECT id FROM executions").fetchone()[0]

    def wait_for_sleep(self, run):
        """Until the sleep's intent is journaled (the deploys' two come first)."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            try:
                kinds = [kind for kind, _ in self.journal()]
            except sqlite3.OperationalError:  # the store's tables are still being made
                kinds = []
            if kinds.count("intent") >= 3:
                return
            self.assertIsNone(run.poll(), "atomflow ended before the sleep began")
            self.assertLess(time.monotonic(), deadline, "the sleep never began")
            time.sleep(0.05)

    def crash(self, run):
        _, stderr = run.communicate(timeout=RUN_TIMEOUT)
        self.assertEqual(run.returncode, -signal.SIGKILL, stderr)
        self.assertIn("crash point", stderr)

    def resume(self):
        return Outcome(subprocess.run(
            [BINARY, "executions", "resume", self.execution_id(), "--json",
             "--store", self.store],
            cwd=self.root, env=self.environment(), capture_output=True, text=True,
            timeout=RUN_TIMEOUT))

    def transactions(self):
        listed = subprocess.run([BINARY, "txn", "list", "--json", "--store", self.store],
                                cwd=self.root, env=self.environment(), capture_output=True,
                                text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        return json.loads(listed.stdout)

    def assert_aborted_and_compensated(self, point, resumed):
        participant = self.participant
        for path in ("/ok/deploy_a", "/ok/deploy_b"):
            self.assertEqual(participant.applications(path), 1, path)
        for path in ("/ok/undo_a", "/ok/undo_b"):
            requests = participant.requests_to(path)
            self.assertGreaterEqual(len(requests), 1,
                                    f"{path} never sent after a crash at {point}\n"
                                    f"{resumed.describe()}")
            self.assertEqual(participant.applications(path), 1,
                             f"{path} applied under more than one key: {requests}")
        self.assertEqual(participant.count("/ok/after"), 0, "went on past an aborted block")
        self.assertEqual([txn["state"] for txn in self.transactions()], ["ABORTED"])
        ends = [json.loads(payload) for kind, payload in self.journal() if kind == "txn_end"]
        self.assertEqual([end["state"] for end in ends], ["ABORTED"])
        decisions = [json.loads(payload)["decision"] for kind, payload in self.journal()
                     if kind == "decision"]
        self.assertTrue(decisions and set(decisions) == {"ABORT"}, decisions)

    def check_cancel(self, point):
        run = self.start(CANCEL_WORKFLOW, point)
        self.addCleanup(run.kill)
        self.wait_for_sleep(run)
        time.sleep(0.2)  # the sleep's timer is set; earlier is handled too, the point is the same
        run.send_signal(signal.SIGINT)
        self.crash(run)
        self.assertIn("cancel", [kind for kind, _ in self.journal()])

        resumed = self.resume()

        self.assertEqual(resumed.state, "CANCELLED", resumed.describe())
        self.assert_aborted_and_compensated(point, resumed)

    def check_failure(self, point):
        run = self.start(FAIL_WORKFLOW, point)
        self.addCleanup(run.kill)
        self.crash(run)

        resumed = self.resume()

        self.assertEqual(resumed.state, "FAILED", resumed.describe())
        self.assertIn("TransactionAborted", resumed.error["tags"])
        self.assertEqual(resumed.error["state"], "ABORTED")
        self.assert_aborted_and_compensated(point, resumed)

    def test_a_staged_file_gone_before_the_decision_aborts_the_resumed_transaction(self):
        # Regression: killed during a sleep after a staged file's branch, before the decision,
        # with the staging folder emptied before the resume, the transaction decided COMMIT,
        # could never publish the file, and the execution still SUCCEEDED with the HTTP
        # branches landed. The file can never be published: the transaction must abort.
        target = os.path.join(self.root, "published", "model.json")
        run = subprocess.Popen(
            [BINARY, "run", self.write(STAGED_WORKFLOW), "--json", "--store", self.store,
             "--data", json.dumps({"url": self.participant.url, "target": target})],
            cwd=self.root, env=self.environment(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.addCleanup(run.kill)
        self.wait_for_sleep(run)  # deploy_a's, deploy_b's and the sleep's intents
        run.kill()
        run.communicate(timeout=RUN_TIMEOUT)
        self.assertNotIn("decision", [kind for kind, _ in self.journal()])
        branches = [json.loads(payload) for kind, payload in self.journal() if kind == "branch"]
        staged = [branch["staged"]["staged_path"] for branch in branches
                  if branch.get("kind") == "staged_file"]
        self.assertEqual(len(staged), 1, branches)
        os.remove(staged[0])

        resumed = self.resume()

        self.assertEqual(resumed.state, "FAILED", resumed.describe())
        self.assertIn("TransactionAborted", resumed.error["tags"])
        self.assertEqual(resumed.error["failed_step"], "stage")
        self.assertIn("is gone", resumed.error["message"])
        self.assert_aborted_and_compensated("a kill during the sleep", resumed)
        self.assertFalse(os.path.exists(target))

    def check_commit(self, point):
        run = self.start(COMMIT_WORKFLOW, point)
        self.addCleanup(run.kill)
        self.crash(run)

        resumed = self.resume()

        self.assertEqual(resumed.state, "SUCCEEDED", resumed.describe())
        for path in ("/ok/deploy_a", "/ok/deploy_b", "/ok/deploy_c", "/ok/after"):
            self.assertEqual(self.participant.applications(path), 1, path)
        for path in ("/ok/undo_a", "/ok/undo_b"):
            self.assertEqual(self.participant.count(path), 0, f"{path} sent after {point}")
        self.assertEqual([txn["state"] for txn in self.transactions()], ["COMMITTED"])
        decisions = [json.loads(payload)["decision"] for kind, payload in self.journal()
                     if kind == "decision"]
        self.assertEqual(decisions, ["COMMIT"])


def _add_tests():
    """One test per fault point and way of aborting, each with its own store and participant."""
    for point in CANCEL_POINTS:
        name = "test_cancel_crash_at_" + point.replace(":", "_")
        setattr(AbortCrashMatrix, name, lambda self, point=point: self.check_cancel(point))
    for point in ABORT_POINTS:
        name = "test_failure_crash_at_" + point.replace(":", "_")
        setattr(AbortCrashMatrix, name, lambda self, point=point: self.check_failure(point))
    for point in COMMIT_POINTS:
        name = "test_commit_crash_at_" + point.replace(":", "_")
        setattr(AbortCrashMatrix, name, lambda self, point=point: self.check_commit(point))


_add_tests()

if __name__ == "__main__":
    unittest.main()
