"""Kills atomflow (SIGKILL, at named fault points) while a transaction with two prepared SQL
branches (two PostgreSQL databases) and a staged file runs, resumes the execution, and checks
that the outcome is the uninterrupted one and that no prepared transaction is left behind. Also
checks that `atomflow recover` resolves prepared transactions that no execution drives.

PostgreSQL is a private cluster (initdb in a temporary folder, its own port), started once for
the whole file; the `psql` client reads the databases."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import unittest

from postgres_cluster import PostgresCluster

SOURCE_DIR = os.environ.get(
    "ATOMFLOW_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BINARY = os.environ.get("ATOMFLOW_BINARY", os.path.join(SOURCE_DIR, "build", "atomflow"))
RUN_TIMEOUT = 120  # seconds; a run takes well under one, so this only stops a hang

WORKFLOW = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - stage_model:
                call: atomflow.files.write
                args:
                  path: ${args.path}
                  content: "weights"
            - register:
                call: atomflow.sql.exec
                args:
                  database: registry
                  statements:
                    - {sql: "INSERT INTO models VALUES ($1, $2)", params: ["cancer", 3]}
                result: registered
            - audit:
                call: atomflow.sql.exec
                args: {database: audit, statements: ["INSERT INTO events VALUES ('released')"]}
            - smoke_test:
                switch:
                  - condition: ${args.fail}
                    raise: "smoke test failed"
    - done:
        return: ${registered.row_count}
"""

# Fault points: a branch journaled but not prepared, prepared but its result not journaled
# (for the first and the last branch), prepared before its branch record and intent were
# durable (prepare_sent: the journal knows nothing of the gid; models has a primary key, so a
# leftover the resumed execution did not roll back first would block its insert), and right
# after the decision.
COMMIT_POINTS = ["before_prepare:register", "after_prepare:register", "prepare_sent:register",
                 "branch:audit", "after_prepare:audit", "prepare_sent:audit", "decision"]
ABORT_POINTS = ["after_prepare:audit", "prepare_sent:audit", "decision"]


class SqlCrashResumeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = PostgresCluster()
        cls.count = 0

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def setUp(self):
        SqlCrashResumeTest.count += 1
        suffix = str(SqlCrashResumeTest.count)
        self.registry = "registry_" + suffix
        self.audit = "audit_" + suffix
        self.cluster.query("postgres", f"CREATE DATABASE {self.registry}")
        self.cluster.query("postgres", f"CREATE DATABASE {self.audit}")
        self.cluster.query(self.registry, "CREATE TABLE models (name TEXT PRIMARY KEY, v INT)")
        self.cluster.query(self.audit, "CREATE TABLE events (what TEXT)")
        self.sandbox = tempfile.mkdtemp(prefix="atomflow-sqlrun-")
        self.addCleanup(shutil.rmtree, self.sandbox, True)
        self.model = os.path.join(self.sandbox, "published", "model.bin")
        with open(os.path.join(self.sandbox, "release.yaml"), "w", encoding="utf-8") as out:
            out.write(WORKFLOW)
        # registry from the file through a secret variable, audit from the override variable.
        with open(os.path.join(self.sandbox, "atomflow.yaml"), "w", encoding="utf-8") as out:
            out.write("databases:\n  registry: {secret_env: REGISTRY_DSN}\n")
        self.env = dict(os.environ, REGISTRY_DSN=self.cluster.uri(self.registry),
                        ATOMFLOW_DATABASE_AUDIT=self.cluster.uri(self.audit),
                        ATOMFLOW_SLEEP_SCALE="0")
        self.env.pop("ATOMFLOW_CRASH_AT", None)

    def atomflow(self, *args, crash_at=None, store="atomflow.db"):
        env = dict(self.env)
        if crash_at:
            env["ATOMFLOW_CRASH_AT"] = crash_at
        done = subprocess.run([BINARY, *args, "--store", store], cwd=self.sandbox, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
        document = json.loads(done.stdout) if done.stdout.strip() else None
        return done, document

    def run_release(self, fail, crash_at=None):
        data = json.dumps({"path": self.model, "fail": fail})
        return self.atomflow("run", "release.yaml", "--data", data, "--json", crash_at=crash_at)

    def crash(self, fail, point):
        """Runs until atomflow kills itself at point; returns the execution id."""
        done, _ = self.run_release(fail, crash_at=point)
        self.assertEqual(done.returncode, -signal.SIGKILL, done.stderr)
        for line in done.stderr.splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "execution" and words[2] == "started":
                return words[1]
        raise AssertionError("no execution id on stderr:\n" + done.stderr)

    def rows(self):
        return (self.cluster.query(self.registry, "SELECT count(*) FROM models"),
                self.cluster.query(self.audit, "SELECT count(*) FROM events"))

    def prepared(self):
        return self.cluster.query("postgres", "SELECT count(*) FROM pg_prepared_xacts")

    def assert_committed(self, document):
        self.assertEqual(document["state"], "SUCCEEDED", document)
        self.assertEqual(document["result"], 1)
        self.assertEqual(self.rows(), ("1", "1"))
        self.assertTrue(os.path.exists(self.model))
        self.assertEqual(self.prepared(), "0")

    def assert_aborted(self, document):
        self.assertEqual(document["state"], "FAILED", document)
        self.assertIn("TransactionAborted", document["error"]["tags"])
        self.assertEqual(self.rows(), ("0", "0"))
        self.assertFalse(os.path.exists(self.model))
        self.assertEqual(self.prepared(), "0")

    def check_commit_after_crash(self, point):
        execution_id = self.crash(False, point)
        done, document = self.atomflow("executions", "resume", execution_id, "--json")
        self.assertEqual(document["id"], execution_id, done.stderr)
        self.assert_committed(document)

    def check_abort_after_crash(self, point):
        execution_id = self.crash(True, point)
        done, document = self.atomflow("executions", "resume", execution_id, "--json")
        self.assertEqual(document["id"], execution_id, done.stderr)
        self.assert_aborted(document)

    def test_uninterrupted_runs_commit_and_abort(self):
        _, aborted = self.run_release(True)
        self.assert_aborted(aborted)
        _, committed = self.run_release(False)
        self.assert_committed(committed)

    def test_recover_resolves_prepared_transactions_nobody_drives(self):
        # Decided COMMIT, then the execution was marked failed by hand: recover commits.
        execution_id = self.crash(False, "decision")
        self.assertEqual(self.prepared(), "2")
        self.mark_failed(execution_id)
        done, document = self.atomflow("--log-level", "info", "recover", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        outcomes = sorted(item["outcome"] for item in document["prepared"])
        self.assertEqual(outcomes, ["committed", "committed"], done.stderr)
        self.assertIn(execution_id, done.stderr)  # each resolution is logged with its gid
        self.assertEqual(self.rows(), ("1", "1"))
        self.assertEqual(self.prepared(), "0")

        # Undecided, and its execution unknown to the store recovering: it may be another
        # store's, running now, so recover leaves it alone (regression: a recover on another
        # store rolled back a live run's first branch, and its commit then half-failed) and
        # rolls it back only when told that no other store uses the databases.
        self.cluster.query(self.registry, "DELETE FROM models")
        self.cluster.query(self.audit, "DELETE FROM events")
        self.crash(False, "after_prepare:audit")
        self.assertEqual(self.prepared(), "2")
        done, _ = self.atomflow("recover", "--json", store="other.db")
        self.assertEqual(done.returncode, 2, done.stderr)  # no such store: nothing created
        self.assertFalse(os.path.exists(os.path.join(self.sandbox, "other.db")))
        with open(os.path.join(self.sandbox, "noop.yaml"), "w", encoding="utf-8") as file:
            file.write("main:\n  steps:\n    - done:\n        return: 1\n")
        done, _ = self.atomflow("run", "noop.yaml", "--json", store="other.db")  # another store
        self.assertEqual(done.returncode, 0, done.stderr)
        done, document = self.atomflow("recover", "--json", store="other.db")
        outcomes = [item["outcome"] for item in document["prepared"]]
        self.assertEqual(outcomes, ["skipped (unknown to this store)"] * 2, done.stderr)
        self.assertEqual(self.prepared(), "2")
        done, document = self.atomflow("recover", "--json", "--roll-back-unknown",
                                       store="other.db")
        outcomes = sorted(item["outcome"] for item in document["prepared"])
        self.assertEqual(outcomes, ["rolled back", "rolled back"], done.stderr)
        self.assertEqual(self.rows(), ("0", "0"))
        self.assertEqual(self.prepared(), "0")

    def test_resume_where_its_databases_are_not_configured_is_refused(self):
        # Regression: resumed from a folder without the atomflow.yaml that names its databases,
        # an execution with both branches prepared failed its next step, aborted a transaction
        # that should commit and could not roll its prepared gids back. It must stay ACTIVE,
        # untouched, for a process that has the databases.
        execution_id = self.crash(False, "after_prepare:audit")
        self.assertEqual(self.prepared(), "2")
        elsewhere = tempfile.mkdtemp(prefix="atomflow-sqlrun-elsewhere-")
        self.addCleanup(shutil.rmtree, elsewhere, True)
        env = {key: value for key, value in self.env.items()
               if not key.startswith("ATOMFLOW_DATABASE_")}
        store = os.path.join(self.sandbox, "atomflow.db")
        done = subprocess.run([BINARY, "executions", "resume", execution_id, "--store", store],
                              cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("cannot resume here", done.stderr)
        self.assertIn("registry", done.stderr)
        self.assertEqual(self.prepared(), "2")

        done, document = self.atomflow("executions", "resume", execution_id, "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assert_committed(document)
        self.assertEqual(self.prepared(), "0")

    def mark_failed(self, execution_id):
        with sqlite3.connect(os.path.join(self.sandbox, "atomflow.db")) as store:
            store.execute("UPDATE executions SET state = 'FAILED', owner = '' WHERE id = ?",
                          (execution_id,))

    def test_recover_resumes_a_prepare_the_journal_never_recorded(self):
        # Killed once register was prepared and before its branch record and intent were
        # durable: recover resumes the execution, which rolls the gid back before preparing it
        # again, and finds nothing left to resolve.
        execution_id = self.crash(False, "prepare_sent:register")
        self.assertEqual(self.prepared(), "1")
        done, document = self.atomflow("recover", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual([item["id"] for item in document["executions"]], [execution_id])
        self.assertEqual(document["prepared"], [])
        self.assertEqual(document["executions"][0]["state"], "SUCCEEDED", document)
        self.assertEqual(self.rows(), ("1", "1"))
        self.assertTrue(os.path.exists(self.model))
        self.assertEqual(self.prepared(), "0")

    def test_recover_rolls_back_a_prepare_the_journal_never_recorded(self):
        # Killed once audit was prepared and before its branch record and intent were durable;
        # the execution then ended without resuming: neither gid has a decision, and audit's
        # is unknown to the journal.
        execution_id = self.crash(False, "prepare_sent:audit")
        self.assertEqual(self.prepared(), "2")
        with sqlite3.connect(os.path.join(self.sandbox, "atomflow.db")) as store:
            steps = [json.loads(payload)["step"] for (payload,) in store.execute(
                "SELECT payload FROM journal_entries WHERE execution_id = ? AND kind = 'branch' "
                "ORDER BY seq", (execution_id,))]
        self.assertEqual(steps, ["stage_model", "register"])
        self.mark_failed(execution_id)
        done, document = self.atomflow("recover", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        outcomes = sorted(item["outcome"] for item in document["prepared"])
        self.assertEqual(outcomes, ["rolled back", "rolled back"], done.stderr)
        self.assertEqual(self.rows(), ("0", "0"))
        self.assertEqual(self.prepared(), "0")

    def test_recover_rolls_back_a_gid_found_on_another_database_than_its_branch(self):
        # A process that died before its branch record was durable may have prepared a gid on
        # another database than the one its replay chose and committed under that gid: that
        # leftover is not the committed branch, and aborts.
        _, document = self.run_release(False)
        self.assert_committed(document)
        gid = f"atomflow:{document['id']}:release#1:3"  # audit's branch, committed
        self.cluster.query(self.registry, "BEGIN; INSERT INTO models VALUES ('stray', 9); "
                           f"PREPARE TRANSACTION '{gid}'")
        self.assertEqual(self.prepared(), "1")
        done, recovered = self.atomflow("recover", "--json")
        self.assertEqual([item["outcome"] for item in recovered["prepared"]], ["rolled back"],
                         done.stderr)
        self.assertEqual(self.rows(), ("1", "1"))
        self.assertEqual(self.prepared(), "0")

    def test_commit_that_finds_its_gid_gone_is_left_for_an_operator(self):
        # Someone finished the prepared transactions behind atomflow's back after the decision:
        # nothing in the journal proves they were committed by atomflow, so it does not guess.
        execution_id = self.crash(False, "decision")
        for database in (self.registry, self.audit):
            for gid in self.cluster.query(database, "SELECT gid FROM pg_prepared_xacts "
                                          "WHERE database = current_database()").split():
                self.cluster.query(database, f"COMMIT PREPARED '{gid}'")
        done, document = self.atomflow("executions", "resume", execution_id, "--json")
        self.assertEqual(document["state"], "SUCCEEDED", done.stderr)
        self.assertIn("needs an operator", done.stderr)
        _, described = self.atomflow("executions", "describe", execution_id, "--json")
        self.assertEqual([txn["state"] for txn in described["transactions"]],
                         ["COMPENSATION_FAILED"])

    def test_unknown_database_is_a_clear_error(self):
        self.env.pop("ATOMFLOW_DATABASE_AUDIT")
        _, document = self.run_release(False)
        self.assertEqual(document["state"], "FAILED")
        message = json.dumps(document["error"])
        self.assertIn("unknown database 'audit'", message)
        self.assertIn("ATOMFLOW_DATABASE_AUDIT", message)
        self.assertNotIn("postgresql://", message)
        self.assertEqual(self.rows(), ("0", "0"))
        self.assertEqual(self.prepared(), "0")


def add_crash_point_tests():
    for point in COMMIT_POINTS:
        name = "test_commit_resumed_after_crash_at_" + point.replace(":", "_")
        setattr(SqlCrashResumeTest, name,
                lambda self, point=point: self.check_commit_after_crash(point))
    for point in ABORT_POINTS:
        name = "test_abort_resumed_after_crash_at_" + point.replace(":", "_")
        setattr(SqlCrashResumeTest, name,
                lambda self, point=point: self.check_abort_after_crash(point))


add_crash_point_tests()


if __name__ == "__main__":
    unittest.main()
