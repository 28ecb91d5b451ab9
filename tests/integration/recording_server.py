"""A loopback HTTP server for integration tests: it records every POST with the transaction
headers atomflow sends, and lets each test decide what to answer."""

import collections
import http.server
import threading

# One request as the participant saw it.
Request = collections.namedtuple("Request", "path op gid key")


class RecordingServer:
    """Answers POSTs with {} and the status answer() gives; subclasses override answer(),
    which may block (to hold a request in flight) and runs on the request's own thread."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = Request(self.path, self.headers.get("Atomflow-Op"),
                                  self.headers.get("Atomflow-Gid"),
                                  self.headers.get("Idempotency-Key"))
                with server.lock:
                    server.requests.append(request)
                    nth = sum(1 for seen in server.requests if seen.path == self.path)
                status = server.answer(self.path, nth)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # atomflow died while the request was held
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path, nth):
        """The status for the nth request to path (from 1)."""
        return 200

    def paths(self):
        with self.lock:
            return collections.Counter(request.path for request in self.requests)

    def keys(self, path):
        with self.lock:
            return {request.key for request in self.requests if request.path == path}

    def ops(self, path=None):
        with self.lock:
            return [r.op for r in self.requests if path is None or r.path == path]

    def gids(self):
        with self.lock:
            return {request.gid for request in self.requests}

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
