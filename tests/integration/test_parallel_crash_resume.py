"""Kills atomflow (SIGKILL, at named fault points) while parallel branches have HTTP calls in
flight, resumes the execution, and checks that it ends as an uninterrupted run would and that
no HTTP call whose result was journaled before the crash is made again."""

import collections
import http.server
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import unittest

from pipeline_harness import BINARY, RUN_TIMEOUT, Outcome

# Three branches: one answered at once, one whose first request the server holds (so it is in
# flight when atomflow dies), one that sleeps before its call.
BRANCHES_WORKFLOW = """
main:
  params: [args]
  steps:
    - init:
        assign:
          - base: ${args.url}
          - results: {}
    - fanout:
        parallel:
          shared: [results]
          branches:
            - quick:
                steps:
                  - quick_call:
                      call: http.post
                      args: {url: '${base + "/quick"}', body: {branch: "quick"}}
                      result: r
                  - keep_quick:
                      assign:
                        - results["quick"]: ${r.body.calls}
            - held:
                steps:
                  - held_call:
                      call: http.post
                      args: {url: '${base + "/held"}', body: {branch: "held"}}
                      result: r
                  - keep_held:
                      assign:
                        - results["held"]: ${r.body.calls}
            - napping:
                steps:
                  - nap:
                      call: sys.sleep
                      args: {seconds: 0.2}
                  - nap_call:
                      call: http.post
                      args: {url: '${base + "/nap"}', body: {branch: "nap"}}
                      result: r
                  - keep_nap:
                      assign:
                        - results["nap"]: ${r.body.calls}
    - finish:
        call: http.post
        args: {url: '${base + "/finish"}'}
        result: f
    - done:
        return: {results: '${results}', finish: '${f.body.calls}'}
"""

# A parallel loop whose iterations each make two calls and fold them into a shared total.
LOOP_WORKFLOW = """
main:
  params: [args]
  steps:
    - init:
        assign:
          - base: ${args.url}
          - total: 0
          - order: []
    - each:
        parallel:
          shared: [total, order]
          concurrency_limit: 3
          for:
            value: n
            range: [1, 8]
            steps:
              - item_call:
                  call: http.post
                  args: {url: '${base + "/item/" + string(n)}', body: {n: '${n}'}}
                  result: first
              - second_call:
                  call: http.post
                  args: {url: '${base + "/second/" + string(n)}', body: {n: '${n}'}}
                  result: second
              - fold:
                  assign:
                    - total: ${total + first.body.n + second.body.n}
                    - order: ${list.concat(order, n)}
    - done:
        return: {total: '${total}', count: '${len(order)}'}
"""


class CallServer:
    """A loopback HTTP server that answers every POST with {"calls": <n-th call of its path>,
    "n": <body n>} and records each request's path and Idempotency-Key. The first request
    to /held waits until release() (or a timeout), so it is in flight when atomflow dies."""

    def __init__(self):
        self.requests = []  # (path, idempotency key)
        self.lock = threading.Lock()
        self.released = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.requests.append((self.path, self.headers.get("Idempotency-Key")))
                    calls = sum(1 for path, _ in server.requests if path == self.path)
                if self.path == "/held" and calls == 1:
                    server.released.wait(timeout=RUN_TIMEOUT)
                answer = json.dumps({"calls": calls, "n": body.get("n", 0)}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the client died while the request was held
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def release(self):
        self.released.set()

    def stop(self):
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls_by_key(self):
        with self.lock:
            return collections.Counter(key for _, key in self.requests)

    def paths(self):
        with self.lock:
            return collections.Counter(path for path, _ in self.requests)


class ParallelCrashResumeTest(unittest.TestCase):

    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail(f"atomflow binary not found at {BINARY} (set ATOMFLOW_BINARY)")
        self.root = tempfile.mkdtemp(prefix="atomflow-par-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.store = os.path.join(self.root, "atomflow.db")
        self.server = CallServer()
        self.addCleanup(self.server.stop)

    def atomflow(self, *command, crash_at=None):
        env = dict(os.environ)
        env.pop("ATOMFLOW_CRASH_AT", None)
        if crash_at:
            env["ATOMFLOW_CRASH_AT"] = crash_at
        completed = subprocess.run([BINARY, *command, "--store", self.store], env=env,
                                   cwd=self.root, capture_output=True, text=True,
                                   timeout=RUN_TIMEOUT)
        return Outcome(completed)

    def crash_and_resume(self, workflow, point):
        """Runs workflow until atomflow kills itself at point, then resumes it. Returns the
        resumed outcome and the idempotency keys whose results were journaled at the crash."""
        path = os.path.join(self.root, "parallel.yaml")
        with open(path, "w", encoding="utf-8") as file:
            file.write(workflow)
        crashed = self.atomflow("run", path, "--data", json.dumps({"url": self.server.url}),
                                "--json", crash_at=point)
        self.assertEqual(crashed.returncode, -signal.SIGKILL, crashed.describe())
        execution_id = crashed.execution_id()
        completed = self.journaled_http_results(execution_id)

        self.server.release()
        resumed = self.atomflow("executions", "resume", execution_id, "--json")
        self.assertEqual(resumed.returncode, 0, resumed.describe())
        self.assertEqual(resumed.state, "SUCCEEDED", resumed.describe())
        return resumed, completed

    def journaled_http_results(self, execution_id):
        """Idempotency keys (execution id / effect key) of the HTTP calls whose results the
        crashed process journaled."""
        connection = sqlite3.connect(self.store)
        try:
            rows = connection.execute(
                "SELECT key, payload FROM journal_entries WHERE execution_id = ? AND kind = 'result'",
                (execution_id,)).fetchall()
        finally:
            connection.close()
        return {f"{execution_id}/{key}" for key, payload in rows
                if json.loads(payload).get("function", "").startswith("http.")}

    def assert_no_completed_call_repeated(self, completed):
        calls = self.server.calls_by_key()
        self.assertTrue(completed, "the crash point fired before any HTTP result was journaled")
        for key in completed:
            self.assertEqual(calls[key], 1, f"call {key} was made {calls[key]} times")
        # A call in flight at the crash is made again, with the same idempotency key.
        for key, count in calls.items():
            self.assertLessEqual(count, 2, f"call {key} was made {count} times")

    def test_resume_after_crash_while_a_branch_call_is_in_flight(self):
        resumed, completed = self.crash_and_resume(BRANCHES_WORKFLOW, "effect:quick_call")

        result = resumed.document["result"]
        paths = self.server.paths()
        # /quick ran once, before the crash; /held was cut off once and made again; /nap is
        # made again only if it happened to be in flight when atomflow died.
        self.assertEqual(result["results"]["quick"], 1)
        self.assertEqual(result["results"]["held"], 2)
        self.assertEqual(result["results"]["nap"], paths["/nap"])
        self.assertEqual(result["finish"], 1)
        self.assertEqual(paths["/quick"], 1)
        self.assertEqual(paths["/held"], 2)
        self.assertEqual(paths["/finish"], 1)
        self.assert_no_completed_call_repeated(completed)
        held_keys = {key for path, key in self.server.requests if path == "/held"}
        self.assertEqual(len(held_keys), 1, "the resumed /held call changed its idempotency key")

    def test_resume_after_crash_in_parallel_loop_keeps_shared_total(self):
        resumed, completed = self.crash_and_resume(LOOP_WORKFLOW, "effect:second_call")

        # Each of the 8 iterations adds n twice, exactly once: 2 * (1 + ... + 8).
        self.assertEqual(resumed.document["result"], {"total": 72, "count": 8})
        self.assert_no_completed_call_repeated(completed)
        paths = self.server.paths()
        for n in range(1, 9):
            self.assertIn(paths[f"/item/{n}"], (1, 2))
            self.assertIn(paths[f"/second/{n}"], (1, 2))


if __name__ == "__main__":
    unittest.main()
