"""A loopback HTTP participant for the `atomflow serve` tests: it records every request (method,
path, Idempotency-Key, Atomflow-Op, Authorization, body), applies each idempotency key's effect
once, and can hold its answers (a gate) so that a test knows exactly which requests were in
flight when it killed atomflow.

Routes (any method; the rest of the path is free, so tests give each call its own path):
  /ok/...               200 at once
  /slow/<seconds>/...   200 after a delay (keeps executions in flight)
  /conflict/...         409, a definite failure
  /error/...            500, an unknown outcome (retried)
  /flaky/<n>/...        503 for the first n requests to the path, then 200
  /auth/...             200 when Authorization equals expected_authorization, else 401
  /hold/...             waits until release() (or a timeout), then 200
  /redirect/<port>/...  302 to http://127.0.0.1:<port>/ok/landed (another participant)
Every answer is JSON: {"calls": <n-th request to the path>, "applied": <first time for its
key>, "body": <the request body>}. recording_server.py answers POSTs only, with a fixed body
and no gate, so this one stands beside it.
"""

import collections
import http.server
import json
import threading
import time
import urllib.parse

HOLD_TIMEOUT = 300  # seconds a held request waits at most


class Request:
    """One request as the participant saw it."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.key = headers.get("Idempotency-Key")
        self.op = headers.get("Atomflow-Op")
        self.gid = headers.get("Atomflow-Gid")
        self.branch = headers.get("Atomflow-Branch")
        self.authorization = headers.get("Authorization")
        self.headers = dict(headers.items())
        self.body = body
        self.time = time.monotonic()
        self.answered = False  # the whole answer was written
        self.lost = False      # the client went away before the answer was written

    def __repr__(self):
        return (f"{self.method} {self.path} key={self.key} op={self.op} "
                f"answered={self.answered} t={self.time:.3f}")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a thousand executions connect at once


class CountingParticipant:
    """Thread safe: every request runs on its own thread; read the records through methods."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.applied = collections.Counter()  # path -> effects applied (new keys)
        self.keys_seen = set()
        self.expected_authorization = None
        self.released = threading.Event()
        self.frozen = False  # answers wait at the gate while set
        self.gate = threading.Condition(self.lock)
        self.passing = 0  # handlers past the gate that have not finished writing
        self.arrived = threading.Condition(self.lock)
        participant = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                length = int(self.headers.get("Content-Length", 0) or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", errors="replace")
                participant.handle(self, body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

            def log_message(self, *args):
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    # Answering.

    def handle(self, handler, body):
        path = urllib.parse.urlsplit(handler.path).path
        request = Request(handler.command, path, handler.headers, body)
        with self.lock:
            self.requests.append(request)
            nth = sum(1 for seen in self.requests if seen.path == path)
            first = request.key is None or request.key not in self.keys_seen
            if request.key is not None:
                self.keys_seen.add(request.key)
            if first:
                self.applied[path] += 1
            self.arrived.notify_all()
        status = self.status_for(path, nth, request)
        extra = {}
        if isinstance(status, tuple):
            status, extra = status
        answer = json.dumps({"calls": nth, "applied": first, "body": body}).encode()
        with self.lock:  # passing the gate and counting are one step, so freeze() is exact
            self.gate.wait_for(lambda: not self.frozen, timeout=HOLD_TIMEOUT)
            self.passing += 1
        written = False
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer)))
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(answer)
            handler.wfile.flush()
            written = True
        except OSError:  # atomflow died while the request was held
            handler.close_connection = True
        finally:
            with self.lock:
                request.answered = written
                request.lost = not written
                self.passing -= 1

    def status_for(self, path, nth, request):
        parts = path.strip("/").split("/")
        kind = parts[0]
        if kind == "slow":
            time.sleep(float(parts[1]))
        elif kind == "hold":
            self.released.wait(timeout=HOLD_TIMEOUT)
        elif kind == "conflict":
            return 409
        elif kind == "error":
            return 500
        elif kind == "flaky":
            return 503 if nth <= int(parts[1]) else 200
        elif kind == "redirect":
            return 302, {"Location": f"http://127.0.0.1:{int(parts[1])}/ok/landed"}
        elif kind == "auth":
            expected = self.expected_authorization
            return 200 if expected and request.authorization == expected else 401
        return 200

    def release(self):
        """Lets every /hold request (and later ones) answer."""
        self.released.set()

    def freeze(self):
        """From now on answers wait at the gate (requests are still received and recorded)."""
        with self.lock:
            self.frozen = True

    def thaw(self):
        with self.lock:
            self.frozen = False
            self.gate.notify_all()

    def settled(self):
        """True when no handler is between the gate and the end of its answer."""
        with self.lock:
            return self.passing == 0

    # Reading the records.

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def count(self, prefix=""):
        with self.lock:
            return sum(1 for request in self.requests if request.path.startswith(prefix))

    def wait_for(self, prefix, count=1, timeout=120):
        """Blocks until count requests under prefix arrived; returns whether they did."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while sum(1 for r in self.requests if r.path.startswith(prefix)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True

    def paths(self):
        with self.lock:
            return collections.Counter(request.path for request in self.requests)

    def requests_to(self, path):
        with self.lock:
            return [request for request in self.requests if request.path == path]

    def counts_by_key(self):
        """Idempotency-Key -> how many requests carried it."""
        with self.lock:
            return collections.Counter(r.key for r in self.requests if r.key is not None)

    def applications(self, path):
        """How many times the effect of path was applied: once per distinct key."""
        with self.lock:
            return self.applied[path]

    def unanswered(self):
        """Requests received whose answer has not been written yet and may still be (not
        those whose client went away)."""
        with self.lock:
            return [r for r in self.requests if not r.answered and not r.lost]

    def answered_keys(self):
        with self.lock:
            return {r.key for r in self.requests if r.answered and r.key is not None}

    def stop(self):
        self.released.set()
        self.thaw()
        self.httpd.shutdown()
        self.httpd.server_close()
