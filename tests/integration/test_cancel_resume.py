"""Cancels a running execution (SIGINT) and kills the process (SIGKILL) while the transaction
is being undone, then resumes it: the cancellation must survive the crash. A resumed run must
finish the abort (compensate once, never commit) rather than carry on as if nobody had
cancelled, or fail because its journal no longer matches."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from pipeline_harness import BINARY, RUN_TIMEOUT, Outcome
from recording_server import RecordingServer

# deploy is compensated by undeploy; the sleep is where the cancel arrives; after the block,
# /after must never be called for a cancelled execution.
WORKFLOW = """
main:
  params: [args]
  steps:
    - init:
        assign:
          - base: ${args.url}
    - release:
        transaction:
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${base + "/deploy"}
                compensate:
                  call: http.post
                  args:
                    url: ${base + "/undeploy"}
            - wait:
                call: sys.sleep
                args:
                  seconds: 30
    - after:
        call: http.post
        args:
          url: ${base + "/after"}
    - done:
        return: committed
"""


# The job takes a moment to stop when cancelled, so the test can kill atomflow after the
# cancel is journaled and before the job's outcome comes back.
JOB_WORKFLOW = """
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
            - job:
                call: atomflow.jobs.run
                args:
                  command: ["/bin/sh", "-c", "trap 'sleep 1; exit 143' TERM; sleep 30 & wait"]
                  temp_location: ${args.temp}
    - after:
        call: http.post
        args:
          url: ${args.url + "/after"}
"""


DEADLINE_WORKFLOW = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          timeout: 1
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${args.url + "/deploy"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/undeploy"}
    - after:
        call: http.post
        args:
          url: ${args.url + "/after"}
"""

# A commit with a branch to finish (TCC): its decision waits for a commit cycle of its own.
DEADLINE_TCC_WORKFLOW = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          timeout: 1
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
    - after:
        call: http.post
        args:
          url: ${args.url + "/after"}
"""


class HoldingServer(RecordingServer):
    """The first /undeploy is held until released is set, so the compensation is in flight
    when the test kills atomflow."""

    def __init__(self):
        self.released = threading.Event()
        self.undeploy_arrived = threading.Event()
        self.deploy_arrived = threading.Event()
        super().__init__()

    def answer(self, path, nth):
        if path == "/deploy":
            self.deploy_arrived.set()
        if path == "/undeploy" and nth == 1:
            self.undeploy_arrived.set()
            self.released.wait(timeout=RUN_TIMEOUT)
        return 200

    def stop(self):
        self.released.set()
        super().stop()


class CancelResumeTest(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="atomflow-cancel-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.store = os.path.join(self.root, "atomflow.db")
        self.workflow = os.path.join(self.root, "release.yaml")
        with open(self.workflow, "w", encoding="utf-8") as file:
            file.write(WORKFLOW)
        self.server = HoldingServer()
        self.addCleanup(self.server.stop)

    def start_run(self):
        return subprocess.Popen(
            [BINARY, "run", self.workflow, "--json", "--store", self.store,
             "--data", json.dumps({"url": self.server.url})],
            cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def execution_id(self):
        with sqlite3.connect(self.store) as db:
            return db.execute("SELECT id FROM executions").fetchone()[0]

    def journal_kinds(self, execution_id):
        with sqlite3.connect(self.store) as db:
            rows = db.execute("SELECT kind FROM journal_entries WHERE execution_id = ?", (execution_id,))
            return [kind for (kind,) in rows]

    def test_cancel_then_kill_during_compensation_finishes_the_abort(self):
        run = self.start_run()
        self.addCleanup(run.kill)
        self.assertTrue(self.server.deploy_arrived.wait(timeout=RUN_TIMEOUT))
        time.sleep(0.5)  # let the sleep begin; where exactly does not change the outcome
        run.send_signal(signal.SIGINT)
        self.assertTrue(self.server.undeploy_arrived.wait(timeout=RUN_TIMEOUT),
                        "the cancelled run never compensated")
        run.kill()
        run.communicate(timeout=RUN_TIMEOUT)
        execution_id = self.execution_id()
        self.assertIn("cancel", self.journal_kinds(execution_id))

        self.server.released.set()
        resumed = Outcome(subprocess.run(
            [BINARY, "executions", "resume", execution_id, "--json", "--store", self.store],
            cwd=self.root, capture_output=True, text=True, timeout=RUN_TIMEOUT))

        self.assertEqual(resumed.state, "CANCELLED", resumed.describe())
        paths = self.server.paths()
        self.assertEqual(paths["/deploy"], 1)
        self.assertEqual(paths["/after"], 0, "a cancelled execution went on past its block")
        # The compensation in flight at the kill is sent again, with the same key.
        self.assertGreaterEqual(paths["/undeploy"], 1)
        self.assertEqual(len(self.server.keys("/undeploy")), 1)

    def test_cancel_that_reached_the_journal_is_carried_out_by_resume(self):
        run = self.start_run()
        self.addCleanup(run.kill)
        self.assertTrue(self.server.deploy_arrived.wait(timeout=RUN_TIMEOUT))
        execution_id = self.execution_id()
        # The cancel is meant to arrive during the sleep: wait until its intent is journaled.
        deadline = time.monotonic() + RUN_TIMEOUT
        while self.journal_kinds(execution_id).count("intent") < 2:
            self.assertLess(time.monotonic(), deadline, "the sleep never began")
            time.sleep(0.05)
        time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        deadline = time.monotonic() + RUN_TIMEOUT
        while "cancel" not in self.journal_kinds(execution_id):
            self.assertLess(time.monotonic(), deadline, "the cancel was never journaled")
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)  # the second signal quits at once
        run.communicate(timeout=RUN_TIMEOUT)
        self.assertEqual(run.returncode, 130)

        self.server.released.set()
        resumed = Outcome(subprocess.run(
            [BINARY, "executions", "resume", execution_id, "--json", "--store", self.store],
            cwd=self.root, capture_output=True, text=True, timeout=RUN_TIMEOUT))

        self.assertEqual(resumed.state, "CANCELLED", resumed.describe())
        self.assertEqual(self.server.paths()["/after"], 0)
        self.assertEqual(len(self.server.keys("/undeploy")), 1)

    def test_cancel_then_kill_while_a_job_stops_resumes_into_the_abort(self):
        """Regression: the resume threw its cancellation at the last replayed effect (the step
        before the job), so it asked for other effects than the journal held and failed with
        'cannot resume', leaving the deploy in place."""
        with open(self.workflow, "w", encoding="utf-8") as file:
            file.write(JOB_WORKFLOW)
        temp = os.path.join(self.root, "temp")
        run = subprocess.Popen(
            [BINARY, "run", self.workflow, "--json", "--store", self.store,
             "--data", json.dumps({"url": self.server.url, "temp": temp})],
            cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(run.kill)
        self.assertTrue(self.server.deploy_arrived.wait(timeout=RUN_TIMEOUT))
        execution_id = self.execution_id()
        self.wait_for_journal(execution_id, "intent", min_count=2)  # the job's intent
        time.sleep(0.3)  # the job is running
        run.send_signal(signal.SIGINT)
        self.wait_for_journal(execution_id, "cancel")
        run.kill()
        run.communicate(timeout=RUN_TIMEOUT)
        self.server.released.set()

        resumed = Outcome(subprocess.run(
            [BINARY, "executions", "resume", execution_id, "--json", "--store", self.store],
            cwd=self.root, capture_output=True, text=True, timeout=RUN_TIMEOUT))

        self.assertEqual(resumed.state, "CANCELLED", resumed.describe())
        paths = self.server.paths()
        self.assertEqual(paths["/after"], 0)
        self.assertEqual(paths["/deploy"], 1)
        self.assertEqual(len(self.server.keys("/undeploy")), 1)

    def test_local_cancel_of_an_execution_whose_process_died_compensates_it(self):
        """Regression: after `kill -9` of its `atomflow run`, `executions cancel ID` answered
        that cancelling needs the process that runs the execution (Ctrl-C in its terminal),
        though that process was dead. It now resumes the execution with the cancel requested
        and waits for it to end CANCELLED, its transaction compensated."""
        run = self.start_run()
        self.addCleanup(run.kill)
        self.assertTrue(self.server.deploy_arrived.wait(timeout=RUN_TIMEOUT))
        execution_id = self.execution_id()
        self.wait_for_journal(execution_id, "intent", min_count=2)  # the sleep's intent
        cancel = [BINARY, "executions", "cancel", execution_id, "--store", self.store]

        # While its process lives, that process owns the execution.
        owned = subprocess.run(cancel, cwd=self.root, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
        self.assertEqual(owned.returncode, 2, owned.stderr)
        self.assertIn("is run by a live process", owned.stderr)

        run.kill()
        run.communicate(timeout=RUN_TIMEOUT)
        # Regression: `executions wait` on it waited in silence, forever.
        waited = subprocess.run([BINARY, "executions", "wait", execution_id, "--timeout", "1",
                                 "--store", self.store], cwd=self.root, capture_output=True,
                                text=True, timeout=RUN_TIMEOUT)
        self.assertNotEqual(waited.returncode, 0)
        self.assertIn("no process runs execution", waited.stderr)
        self.assertIn(f"executions resume {execution_id}", waited.stderr)
        self.server.released.set()
        cancelled = Outcome(subprocess.run(cancel + ["--json"], cwd=self.root,
                                           capture_output=True, text=True,
                                           timeout=RUN_TIMEOUT))

        self.assertEqual(cancelled.returncode, 0, cancelled.stderr)
        self.assertEqual(cancelled.state, "CANCELLED", cancelled.stderr)
        paths = self.server.paths()
        self.assertEqual(paths["/deploy"], 1)
        self.assertEqual(paths["/undeploy"], 1)
        self.assertEqual(paths["/after"], 0)
        again = subprocess.run(cancel, cwd=self.root, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
        self.assertEqual(again.returncode, 2)
        self.assertIn("is CANCELLED already", again.stderr)

    def wait_for_journal(self, execution_id, kind, min_count=1):
        deadline = time.monotonic() + RUN_TIMEOUT
        while self.journal_kinds(execution_id).count(kind) < min_count:
            self.assertLess(time.monotonic(), deadline, f"no {kind} record in the journal")
            time.sleep(0.02)

    def crash_at(self, source, point):
        """Runs source until atomflow kills itself at the fault point."""
        with open(self.workflow, "w", encoding="utf-8") as file:
            file.write(source)
        env = dict(os.environ, ATOMFLOW_CRASH_AT=point)
        crashed = subprocess.run(
            [BINARY, "run", self.workflow, "--json", "--store", self.store,
             "--data", json.dumps({"url": self.server.url})],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(crashed.returncode, -signal.SIGKILL, crashed.stderr)

    def resume_after_deadline(self):
        """Resumes the crashed execution once its transaction's one-second timeout passed."""
        time.sleep(1.2)  # the timeout passes while nobody drives the execution
        return Outcome(subprocess.run(
            [BINARY, "executions", "resume", self.execution_id(), "--json",
             "--store", self.store],
            cwd=self.root, capture_output=True, text=True, timeout=RUN_TIMEOUT))

    def test_undecided_transaction_found_past_its_deadline_aborts(self):
        """Guarantee: a transaction left undecided by a crash and resumed after its deadline
        aborts (its deploy is undone) instead of committing late. Killed where every result
        is durable and the decision is not: at the deploy's result the commit decision, queued
        right behind it, may share its group commit and be durable too."""
        self.crash_at(DEADLINE_WORKFLOW, "undecided:release")
        self.server.released.set()

        resumed = self.resume_after_deadline()

        self.assertEqual(resumed.state, "FAILED", resumed.describe())
        self.assertIn("TransactionAborted", resumed.error["tags"])
        self.assertEqual(resumed.error["cause"]["tags"], ["TimeoutError"])
        self.assertEqual(self.server.paths()["/after"], 0)
        self.assertEqual(self.server.paths()["/undeploy"], 1)

    def test_durable_commit_found_past_its_deadline_is_finished_not_turned_around(self):
        """Regression: killed once the COMMIT decision was durable but before the decide
        effect's own result was, a resume after the deadline decided again, aborted and
        cancelled a transaction whose COMMIT was already durable."""
        self.crash_at(DEADLINE_TCC_WORKFLOW, "decision")
        self.assertEqual(self.journal_kinds(self.execution_id()).count("decision"), 1)

        resumed = self.resume_after_deadline()

        self.assertEqual(resumed.state, "SUCCEEDED", resumed.describe())
        paths = self.server.paths()
        self.assertEqual(paths["/try"], 1)
        self.assertGreaterEqual(paths["/confirm"], 1)
        self.assertEqual(paths["/cancel"], 0)
        self.assertEqual(paths["/after"], 1)
        self.assertEqual(self.journal_kinds(self.execution_id()).count("decision"), 1)


if __name__ == "__main__":
    unittest.main()
