"""A small model-serving HTTP server, the deployment target of the ML pipeline.

Usage: model_server.py PORT [--port-file PATH]   (PORT 0 picks a free port)

  POST /deploy   {run_id, version, model_path}  loads the pickle and makes it current; the
                 deployment it replaces is kept on a stack. Deploying the current run again
                 changes nothing.
  POST /undeploy {run_id}   removes that run's deployment; the previous one becomes current.
                 Undeploying a run that is not deployed answers 200 too (a compensation may
                 arrive twice, or before its action).
  GET  /model    {run_id, version} of the current deployment, or {run_id: null}
  POST /predict  {rows: [[30 floats], ...], simulate_failure?} -> {predictions: [0|1, ...]};
                 with simulate_failure true it answers 500, as a broken model would.

Every request is logged to stderr with its Idempotency-Key header.
"""

import argparse
import json
import os
import pickle
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Deployments:
    """The stack of deployments, newest (current) last. Thread safe: one lock guards it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stack = []  # [{run_id, version, model_path, model}]

    def deploy(self, run_id, version, model_path):
        """Makes the run current; returns False when it already was."""
        with self._lock:
            if self._stack and self._stack[-1]["run_id"] == run_id:
                return False
        with open(model_path, "rb") as source:
            model = pickle.load(source)  # loaded outside the lock: it may take a while

        with self._lock:
            self._stack = [entry for entry in self._stack if entry["run_id"] != run_id]
            self._stack.append({"run_id": run_id, "version": version,
                                "model_path": model_path, "model": model})
        return True

    def undeploy(self, run_id):
        """Removes the run's deployment; returns False when it was not deployed."""
        with self._lock:
            kept = [entry for entry in self._stack if entry["run_id"] != run_id]
            removed = len(kept) != len(self._stack)
            self._stack = kept
        return removed

    def current(self):
        with self._lock:
            return self._stack[-1] if self._stack else None


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's Deployments; one thread per connection."""

    server_version = "ml-model-server/1"

    def do_GET(self):
        if self.path != "/model":
            return self._reply(404, {"error": f"no route GET {self.path}"})
        current = self.server.deployments.current()
        if current is None:
            return self._reply(200, {"run_id": None})
        self._reply(200, {"run_id": current["run_id"], "version": current["version"],
                          "model_path": current["model_path"]})

    def do_POST(self):
        routes = {"/deploy": self._deploy, "/undeploy": self._undeploy,
                  "/predict": self._predict}
        route = routes.get(self.path)
        if route is None:
            return self._reply(404, {"error": f"no route POST {self.path}"})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except ValueError as error:
            return self._reply(400, {"error": f"body is not JSON: {error}"})
        try:
            route(body)
        except (KeyError, TypeError, ValueError, OSError, pickle.UnpicklingError) as error:
            self._reply(400, {"error": f"{type(error).__name__}: {error}"})

    def _deploy(self, body):
        changed = self.server.deployments.deploy(body["run_id"], body.get("version"),
                                                 body["model_path"])
        self._reply(200, {"run_id": body["run_id"], "deployed": changed})

    def _undeploy(self, body):
        removed = self.server.deployments.undeploy(body["run_id"])
        current = self.server.deployments.current()
        self._reply(200, {"run_id": body["run_id"], "removed": removed,
                          "current": current["run_id"] if current else None})

    def _predict(self, body):
        if body.get("simulate_failure"):
            return self._reply(500, {"error": "simulated model failure"})
        current = self.server.deployments.current()
        if current is None:
            return self._reply(503, {"error": "no model deployed"})
        bundle = current["model"]
        features = bundle["scaler"].transform(body["rows"])
        predictions = [int(label) for label in bundle["model"].predict(features)]
        self._reply(200, {"run_id": current["run_id"], "predictions": predictions})

    def _reply(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code="-", size="-"):
        key = self.headers.get("Idempotency-Key", "-") if self.headers else "-"
        sys.stderr.write(f"model_server: {self.command} {self.path} -> {code} "
                         f"idempotency-key={key}\n")
        sys.stderr.flush()


def main():
    parser = argparse.ArgumentParser(description="Serves the ML pipeline's models.")
    parser.add_argument("port", type=int, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.deployments = Deployments()
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".partial", "w", encoding="utf-8") as out:
            out.write(f"{port}\n")
        os.replace(args.port_file + ".partial", args.port_file)
    print(f"listening on {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
