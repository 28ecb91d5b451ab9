"""A compensation that keeps failing leaves its transaction COMPENSATION_FAILED: listed by
`atomflow txn list --state`, and ended by an operator with `atomflow txn resolve --retry` (the
compensation runs again and lands) or `--mark-compensated`."""

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from pipeline_harness import BINARY, RUN_TIMEOUT

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


class FlakyUndeployServer:
    """/deploy succeeds; /undeploy answers 503 until healthy is set. Records every call."""

    def __init__(self):
        self.calls = []
        self.healthy = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.calls.append((self.path, self.headers.get("Atomflow-Op")))
                ok = self.path not in ("/undeploy", "/confirm") or server.healthy.is_set()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


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
        undeploys = [op for path, op in self.server.calls if path == "/undeploy"]
        self.assertEqual(set(undeploys), {"compensate"})

    def test_mark_compensated_ends_it_without_calling_anything(self):
        gid = self.transactions("--state", "COMPENSATION_FAILED")[0]["gid"]
        calls_before = len(self.server.calls)
        resolved = self.atomflow("txn", "resolve", gid, "--mark-compensated")
        self.assertEqual(resolved.returncode, 0, resolved.stderr)
        self.assertEqual(len(self.server.calls), calls_before)
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
        self.assertEqual([p for p, _ in self.server.calls if p == "/cancel"], [])

        finished = self.atomflow("txn", "resolve", stuck["gid"], "--mark-compensated")
        self.assertEqual(finished.returncode, 0, finished.stderr)
        states = {t["gid"]: t["state"] for t in self.transactions()}
        self.assertEqual(states[stuck["gid"]], "COMMITTED")

    def test_unknown_state_filter_is_refused(self):
        listed = self.atomflow("txn", "list", "--state", "BOGUS")
        self.assertEqual(listed.returncode, 2)
        self.assertIn("unknown transaction state 'BOGUS'", listed.stderr)


if __name__ == "__main__":
    unittest.main()
