"""What the ML-pipeline integration tests share: a sandbox per test, the model server as a
real child process, and helpers that run the atomflow binary and read what it left behind.

ATOMFLOW_BINARY names the binary under test (CTest sets it); ATOMFLOW_SOURCE_DIR the source
tree (default: two folders up from this file).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import unittest
import urllib.request

SOURCE_DIR = os.environ.get(
    "ATOMFLOW_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BINARY = os.environ.get("ATOMFLOW_BINARY", os.path.join(SOURCE_DIR, "build", "atomflow"))
EXAMPLE_DIR = os.path.join(SOURCE_DIR, "examples", "ml-pipeline")
PIPELINE = os.path.join(EXAMPLE_DIR, "pipeline.yaml")
DATASET = "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv"
PYTHON = "/usr/bin/python3"
RUN_TIMEOUT = 240  # seconds; a whole run takes a few seconds, so this only stops a hang


class Outcome:
    """One finished atomflow command: its exit status, JSON document and progress output."""

    def __init__(self, completed):
        self.returncode = completed.returncode
        self.stderr = completed.stderr
        self.stdout = completed.stdout
        self.document = json.loads(completed.stdout) if completed.stdout.strip() else None

    @property
    def state(self):
        return self.document["state"] if self.document else None

    @property
    def error(self):
        return self.document.get("error", {}) if self.document else {}

    def execution_id(self):
        """The id from the progress line `execution <ID> started` (atomflow's first line)."""
        for line in self.stderr.splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "execution" and words[2] == "started":
                return words[1]
        raise AssertionError(f"no 'execution <ID> started' line on stderr:\n{self.stderr}")

    def describe(self):
        return f"exit {self.returncode}\nstdout: {self.stdout}\nstderr:\n{self.stderr}"


class ModelServer:
    """examples/ml-pipeline/model_server.py on an ephemeral loopback port."""

    def __init__(self, log_path):
        self._log = open(log_path, "w", encoding="utf-8")
        self._process = subprocess.Popen(
            [PYTHON, os.path.join(EXAMPLE_DIR, "model_server.py"), "0"],
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self._process.stdout.readline()  # blocks until the socket listens
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"model server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[2])}"

    def current_model(self):
        """GET /model: {run_id, version, ...}, run_id null when nothing is deployed."""
        with urllib.request.urlopen(self.url + "/model", timeout=10) as response:
            return json.load(response)

    def stop(self):
        self._process.terminate()
        self._process.wait(timeout=10)
        self._process.stdout.close()
        self._log.close()


class PipelineTestCase(unittest.TestCase):
    """Gives each test its own folder, store and model server, removed when the test ends."""

    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail(f"atomflow binary not found at {BINARY} (set ATOMFLOW_BINARY)")
        self.root = tempfile.mkdtemp(prefix="atomflow-ml-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.work_dir = os.path.join(self.root, "work")
        os.makedirs(self.work_dir)
        self.store = os.path.join(self.root, "atomflow.db")
        self.server = ModelServer(os.path.join(self.root, "model_server.log"))
        self.addCleanup(self.server.stop)

    # Running atomflow.

    def pipeline_args(self, **overrides):
        args = {"data": DATASET, "work_dir": self.work_dir, "server_url": self.server.url}
        args.update(overrides)
        return args

    def atomflow(self, *command, crash_at=None):
        env = dict(os.environ, ML_PIPELINE_DIR=EXAMPLE_DIR)
        env.pop("ATOMFLOW_CRASH_AT", None)
        if crash_at:
            env["ATOMFLOW_CRASH_AT"] = crash_at
        completed = subprocess.run([BINARY, *command, "--store", self.store], env=env,
                                   cwd=self.root, capture_output=True, text=True,
                                   timeout=RUN_TIMEOUT)
        return Outcome(completed)

    def run_pipeline(self, args, crash_at=None):
        return self.atomflow("run", PIPELINE, "--data", json.dumps(args), "--json",
                             crash_at=crash_at)

    def resume(self, execution_id):
        return self.atomflow("executions", "resume", execution_id, "--json")

    def describe_execution(self, execution_id):
        outcome = self.atomflow("executions", "describe", execution_id, "--json")
        self.assertEqual(outcome.returncode, 0, outcome.describe())
        return outcome.document

    # What a run left behind.

    def registry_rows(self):
        """{run_id: version} of every registered model; empty when there is no registry."""
        path = os.path.join(self.work_dir, "registry.db")
        if not os.path.exists(path):
            return {}
        connection = sqlite3.connect(path)
        try:
            return dict(connection.execute("SELECT run_id, version FROM models"))
        except sqlite3.OperationalError:  # the table was never created
            return {}
        finally:
            connection.close()

    def published_model(self, run_id):
        return os.path.join(self.work_dir, "lake", "models", run_id, "model.pkl")

    def published_runs(self):
        models = os.path.join(self.work_dir, "lake", "models")
        return sorted(os.listdir(models)) if os.path.isdir(models) else []

    def job_folders(self):
        jobs = os.path.join(self.root, "jobs")
        return sorted(os.listdir(jobs)) if os.path.isdir(jobs) else []

    def job_launches(self):
        """[(job id, component)] in the order the components started."""
        path = os.path.join(self.work_dir, "runs.log")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as log:
            return [tuple(line.split()) for line in log if line.strip()]

    # Assertions shared by several tests.

    def assert_succeeded(self, outcome):
        self.assertEqual(outcome.returncode, 0, outcome.describe())
        self.assertEqual(outcome.state, "SUCCEEDED", outcome.describe())
        return outcome.document["result"]

    def assert_released(self, result):
        """The run's model is registered once, published and served."""
        run_id = result["run_id"]
        self.assertEqual(self.registry_rows().get(run_id), result["version"])
        self.assertEqual(result["model_path"], self.published_model(run_id))
        self.assertTrue(os.path.isfile(result["model_path"]), result["model_path"])
        served = self.server.current_model()
        self.assertEqual((served["run_id"], served["version"]), (run_id, result["version"]))
        self.assertGreaterEqual(result["metrics"]["accuracy"], 0.9)

    def assert_aborted(self, outcome):
        """The transaction aborted because the smoke test failed."""
        self.assertEqual(outcome.returncode, 1, outcome.describe())
        self.assertEqual(outcome.state, "FAILED", outcome.describe())
        self.assertIn("TransactionAborted", outcome.error.get("tags", []), outcome.describe())
        message = outcome.error.get("message", "")
        self.assertIn("smoke test", message.lower())
        self.assertIn("500", message)

