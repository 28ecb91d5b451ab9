"""What the `atomflow serve` integration tests share: the server as a real child process on a
free loopback port (its stderr kept in a file for the secret checks), a small JSON client, the
`atomflow tokens` / `atomflow secrets` commands, and a TestCase that always cleans up.

ATOMFLOW_BINARY names the binary under test (CTest sets it).
"""

import atexit
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from pipeline_harness import BINARY

START_TIMEOUT = 60  # seconds for the listening line; recovery of a big store takes a while
WAIT_TIMEOUT = 120  # seconds for an execution to finish; only stops a hang
LISTENING = re.compile(r"atomflow serve: listening on (http://(\S+):(\d+))")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")

# Every server started by this process, so that none outlives it even when a test errors out
# before its cleanup was registered.
_LIVE = set()
_LIVE_LOCK = threading.Lock()


class Response:
    """One HTTP answer: status, headers, the raw text and the parsed JSON body (None if none)."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.text = raw.decode("utf-8", errors="replace")
        try:
            self.body = json.loads(self.text) if self.text.strip() else None
        except ValueError:
            self.body = None

    @property
    def error(self):
        """The `error` object of a Google-style error answer, or {}."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"]
        return {}

    def __repr__(self):
        return f"HTTP {self.status} {self.text[:2000]}"


class Client:
    """A JSON client for one base URL, with an optional bearer token. Never raises for an
    HTTP error status: the caller asserts on Response.status."""

    def __init__(self, base_url, token=None, timeout=60):
        self.base_url = base_url
        self.token = token
        self.timeout = timeout

    def with_token(self, token):
        return Client(self.base_url, token, self.timeout)

    def request(self, method, path, body=None, query=None, raw=None, headers=None, token=None):
        """body: a JSON value to send; raw: bytes sent as they are (a malformed body)."""
        url = self.base_url + path
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = token if token is not None else self.token
        if token:
            request.add_header("Authorization", "Bearer " + token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as failure:
            return Response(failure.code, dict(failure.headers), failure.read())

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)

    def patch(self, path, body=None, **kwargs):
        return self.request("PATCH", path, body=body, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


class AtomflowServer:
    """`atomflow serve` as a child process on one store. start() waits for the listening line;
    stop()/kill() end it; start() again restarts it on the same store. Everything it writes on
    stderr (over all its starts) is kept in log_path."""

    def __init__(self, root, store, auth="none", log_format=None, config=None,
                 listen="127.0.0.1:0", extra_args=(), env=None):
        self.root = root
        self.store = store
        self.auth = auth
        self.log_format = log_format
        self.config = config
        self.listen = listen
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env.pop("ATOMFLOW_CRASH_AT", None)
        self.env.update(env or {})
        self.log_path = os.path.join(root, "server.log")
        self.process = None
        self.url = None
        self.starts = 0
        self._reader = None

    def command(self):
        command = [BINARY, "serve", "--listen", self.listen, "--store", self.store]
        if self.auth:
            command += ["--auth", self.auth]
        if self.log_format:
            command += ["--log-format", self.log_format]
        if self.config:
            command += ["--config", self.config]
        return command + self.extra_args

    def start(self, timeout=START_TIMEOUT):
        """Starts the server and returns once it listens; raises with its output if it exits
        or stays silent."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        listening = threading.Event()
        found = {}
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"===== start {self.starts}: {' '.join(self.command())}\n")
        self.process = subprocess.Popen(
            self.command(), cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(self)

        def copy_stderr(process=self.process):
            with open(self.log_path, "ab") as log:
                for line in iter(process.stderr.readline, b""):
                    log.write(line)
                    log.flush()
                    match = LISTENING.search(line.decode("utf-8", errors="replace"))
                    if match and not listening.is_set():
                        found["url"] = match.group(1)
                        listening.set()
            process.stderr.close()
            listening.set()

        self._reader = threading.Thread(target=copy_stderr, daemon=True)
        self._reader.start()
        listening.wait(timeout)
        if "url" not in found:
            self.kill()
            raise AssertionError(f"atomflow serve did not print its listening line within "
                                 f"{timeout}s:\n{self.log_text()[-5000:]}")
        self.url = found["url"]
        return self

    def client(self, token=None):
        return Client(self.url, token)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def signal(self, number):
        if self.running():
            self.process.send_signal(number)

    def wait(self, timeout=WAIT_TIMEOUT):
        """Waits for the process to exit; returns its exit status (negative: a signal)."""
        code = self.process.wait(timeout=timeout)
        if self._reader:
            self._reader.join(timeout=10)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return code

    def stop(self, timeout=WAIT_TIMEOUT):
        """SIGTERM (drain) and wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        """SIGKILL and wait; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.wait()

    def close(self):
        """Cleanup: ends the process whatever state it is in."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def log_text(self):
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    def log_events(self):
        """The JSON objects among the log lines (with --log-format json)."""
        events = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events


def _kill_leftovers():
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        try:
            server.close()
        except Exception:  # pylint: disable=broad-except
            pass


def run_atomflow(*command, store, env=None, stdin=None, timeout=120):
    """Runs one atomflow command on store; returns the CompletedProcess (text)."""
    environment = dict(os.environ)
    environment.update(env or {})
    return subprocess.run([BINARY, *command, "--store", store], input=stdin, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def create_token(store, name, role):
    """`atomflow tokens create NAME --role ROLE`: the token it prints on stdout."""
    done = run_atomflow("tokens", "create", name, "--role", role, store=store)
    if done.returncode != 0:
        raise AssertionError(f"tokens create {name} failed ({done.returncode}): {done.stderr}")
    words = done.stdout.split()
    tokens = [word for word in words if word.startswith("afk_")]
    return tokens[0] if tokens else done.stdout.strip()


def set_secret(store, name, value):
    """`atomflow secrets set NAME`, the value on stdin (never on the command line)."""
    done = run_atomflow("secrets", "set", name, store=store, stdin=value + "\n")
    if done.returncode != 0:
        raise AssertionError(f"secrets set {name} failed ({done.returncode}): "
                             f"{done.stdout}{done.stderr}")
    return done


def execution_path(execution):
    """/v1/workflows/W/executions/E from an execution resource."""
    return "/v1/" + execution["name"]


def execution_id(execution):
    return execution["name"].rsplit("/", 1)[1]


def journal_rows(store, sql="SELECT execution_id, kind, key, payload FROM journal_entries", args=()):
    """Rows of the journal read through a separate read-only connection."""
    connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


class ServerTestCase(unittest.TestCase):
    """A folder and a store per test; servers made with start_server() are always killed, and
    the folder removed, when the test ends."""

    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail(f"atomflow binary not found at {BINARY} (set ATOMFLOW_BINARY)")
        self.root = tempfile.mkdtemp(prefix="atomflow-serve-")
        self.addCleanup(self.remove_root)
        self.store = os.path.join(self.root, "atomflow.db")
        self.servers = []

    def remove_root(self):
        for server in self.servers:
            server.close()
        if os.environ.get("ATOMFLOW_KEEP_TEST_DIRS"):
            print(f"kept {self.root}")
            return
        shutil.rmtree(self.root, ignore_errors=True)

    def start_server(self, **kwargs):
        server = AtomflowServer(self.root, self.store, **kwargs)
        self.servers.append(server)
        self.addCleanup(server.close)
        server.start()
        return server

    # API helpers; each asserts the call succeeded.

    def deploy(self, client, name, source, **fields):
        body = dict(fields, sourceContents=source)
        answer = client.post("/v1/workflows", body, query={"workflowId": name})
        self.assertEqual(answer.status, 200, answer)
        self.assertTrue(answer.body.get("done"), answer)
        return answer.body["response"]

    def run_execution(self, client, workflow, argument=None, **fields):
        body = dict(fields)
        if argument is not None:
            body["argument"] = json.dumps(argument)
        answer = client.post(f"/v1/workflows/{workflow}/executions", body)
        self.assertEqual(answer.status, 200, answer)
        self.assertIn("/executions/", answer.body.get("name", ""), answer)
        return answer.body

    def get_execution(self, client, execution):
        answer = client.get(execution_path(execution))
        self.assertEqual(answer.status, 200, answer)
        return answer.body

    def wait_finished(self, client, execution, timeout=WAIT_TIMEOUT):
        """Polls the execution until it is in a final state; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_execution(client, execution)
            if current["state"] in FINAL_STATES:
                return current
            if time.monotonic() > deadline:
                self.fail(f"execution still {current['state']} after {timeout}s: {current}")
            time.sleep(0.05)

    def wait_until(self, predicate, what, timeout=WAIT_TIMEOUT, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def list_all(self, client, path, key, page_size=1000, query=None):
        """Every item of a paged list, following nextPageToken."""
        items, token = [], None
        while True:
            params = dict(query or {}, pageSize=str(page_size))
            if token:
                params["pageToken"] = token
            answer = client.get(path, query=params)
            self.assertEqual(answer.status, 200, answer)
            items += answer.body.get(key, [])
            token = answer.body.get("nextPageToken")
            if not token:
                return items

    def assert_error(self, answer, code, status, *words):
        """A Google-style error with this code and status whose message names every word
        (case-insensitive)."""
        self.assertEqual(answer.status, code, answer)
        self.assertEqual(answer.error.get("code"), code, answer)
        self.assertEqual(answer.error.get("status"), status, answer)
        message = answer.error.get("message", "")
        for word in words:
            self.assertIn(word.lower(), message.lower(), f"message does not name {word!r}: "
                                                         f"{answer}")


atexit.register(_kill_leftovers)
