"""Runs the ML pipeline once, end to end, and prints what happened (what `make demo` runs).

    /usr/bin/python3 examples/ml-pipeline/run_demo.py --atomflow build/atomflow
        [--fail-at smoke_test] [--min-accuracy X] [--data FILE] [--work-dir DIR]

It starts the model server on a free port, runs pipeline.yaml with atomflow (its per-step
progress shows as it happens), then summarizes: the steps and their times, the metrics, the
registered version, the transaction's outcome, the published model and the model being served.
Everything lands in examples/ml-pipeline/work/, which later runs reuse: run it twice to see
versions grow, then once with --fail-at smoke_test to watch the release being undone.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request

EXAMPLE_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atomflow", default="build/atomflow", help="the atomflow binary")
    parser.add_argument("--work-dir", default=os.path.join(EXAMPLE_DIR, "work"))
    parser.add_argument("--data", help="the CSV to train on (default: scikit-learn's copy)")
    parser.add_argument("--min-accuracy", type=float, help="the release gate (default 0.9)")
    parser.add_argument("--fail-at", choices=["smoke_test"], help="make a step fail")
    parser.add_argument("--registry-database", metavar="NAME",
                        help="keep the registry in this PostgreSQL database (configured in "
                             "atomflow.yaml or ATOMFLOW_DATABASE_<NAME>), registered by 2PC")
    return parser.parse_args()


class ModelServer:
    """model_server.py as a child process; its request log goes to work/model_server.log."""

    def __init__(self, work_dir):
        self._log = open(os.path.join(work_dir, "model_server.log"), "a", encoding="utf-8")
        self._process = subprocess.Popen(
            [PYTHON, os.path.join(EXAMPLE_DIR, "model_server.py"), "0"],
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self._process.stdout.readline()  # "listening on PORT" once the socket is bound
        if not line.startswith("listening on "):
            self.stop()
            sys.exit(f"run_demo: the model server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[2])}"

    def current_model(self):
        with urllib.request.urlopen(self.url + "/model", timeout=10) as response:
            return json.load(response)

    def stop(self):
        self._process.terminate()
        self._process.wait(timeout=10)
        self._log.close()


def pipeline_argument(args, work_dir, server_url):
    argument = {"work_dir": work_dir, "server_url": server_url}
    optional = {"data": args.data, "min_accuracy": args.min_accuracy, "fail_at": args.fail_at,
                "registry_database": args.registry_database}
    argument.update({key: value for key, value in optional.items() if value is not None})
    return argument


def atomflow(binary, *command, store, capture_stderr=True):
    """Runs one atomflow command; returns (exit status, parsed JSON stdout or None)."""
    env = dict(os.environ, ML_PIPELINE_DIR=EXAMPLE_DIR)
    completed = subprocess.run([binary, *command, "--store", store], env=env,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE if capture_stderr else None, text=True)
    try:
        return completed.returncode, json.loads(completed.stdout)
    except ValueError:
        return completed.returncode, None


def registry_version(work_dir, run_id):
    """The version the registry holds for the run, or None."""
    path = os.path.join(work_dir, "registry.db")
    if not os.path.exists(path):
        return None
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT version FROM models WHERE run_id = ?",
                                 (run_id,)).fetchone()
        return row[0] if row else None
    except sqlite3.OperationalError:
        return None
    finally:
        connection.close()


# The steps worth a line in the summary, with their nesting; inner steps of loops and checks
# are left out.
SUMMARY_STEPS = [
    ("check_args", 0), ("init", 0), ("ingest", 0), ("preprocess", 0), ("train", 0),
    ("evaluate", 0), ("gate", 0), ("publish_model", 1), ("register", 1), ("deploy", 1),
    ("smoke_test", 1), ("check_predictions", 1), ("release", 0), ("done", 0),
]


def print_steps(description):
    """One line per pipeline step that ran: its time and state."""
    ran = {}
    for step in (description or {}).get("steps") or []:
        ran[step.get("step")] = step  # a step that ran twice shows its last run
    if not ran:
        return
    print("steps")
    for name, depth in SUMMARY_STEPS:
        step = ran.get(name)
        if step is None:
            continue
        duration = step.get("duration_ms")
        took = f"{duration / 1000:6.2f} s" if isinstance(duration, (int, float)) else "     -"
        label = "  " * depth + name
        print(f"  {label:<22} {took}  {step.get('state', '')}")


def transaction_outcome(description, run):
    """The release transaction's state, decision and branches, as describe reports them."""
    for transaction in (description or {}).get("transactions") or []:
        if transaction.get("step") != "release":
            continue
        branches = ", ".join(f"{branch.get('step')} ({branch.get('kind')})"
                             for branch in transaction.get("branches") or [])
        return (f"{transaction.get('state')} (decision {transaction.get('decision')}); "
                f"branches: {branches or 'none'}")
    if "TransactionAborted" in run.get("error", {}).get("tags", []):
        return "aborted, every effect undone"
    return "not reached"


def print_summary(run, description, work_dir, served, registry_database=None):
    run_id = run.get("id", "?")
    print(f"\n=== execution {run_id}: {run.get('state')} ===")
    print_steps(description)
    result = run.get("result") or {}
    if run.get("state") != "SUCCEEDED":
        error = run.get("error", {})
        print(f"error        {error.get('message')}  {error.get('tags', [])}")
    metrics = result.get("metrics")
    if metrics:
        print(f"metrics      accuracy {metrics['accuracy']}, roc_auc {metrics['roc_auc']}")
    if registry_database:
        version = result.get("version")
        where = f"PostgreSQL database '{registry_database}', two-phase commit"
    else:
        version = registry_version(work_dir, run_id)
        where = os.path.join(work_dir, "registry.db")
    print(f"registry     {f'version {version}' if version else 'no version for this run'}"
          f"  ({where})")
    print(f"transaction  {transaction_outcome(description, run)}")
    published = os.path.join(work_dir, "lake", "models", run_id, "model.pkl")
    print(f"model file   {published if os.path.exists(published) else 'not published'}")
    serving = (f"run {served['run_id']} (version {served['version']})" if served.get("run_id")
               else "nothing deployed")
    print(f"server       serving {serving}")


def main():
    args = parse_args()
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    store = os.path.join(work_dir, "atomflow.db")
    server = ModelServer(work_dir)
    try:
        argument = pipeline_argument(args, work_dir, server.url)
        status, run = atomflow(args.atomflow, "run", os.path.join(EXAMPLE_DIR, "pipeline.yaml"),
                               "--data", json.dumps(argument), "--json", store=store,
                               capture_stderr=False)
        if run is None:
            sys.exit(f"run_demo: atomflow exited with {status} and printed no result")
        description = None
        if run.get("id"):
            _, description = atomflow(args.atomflow, "executions", "describe", run["id"],
                                      "--json", store=store)
        print_summary(run, description, work_dir, server.current_model(),
                      args.registry_database)
    finally:
        server.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
