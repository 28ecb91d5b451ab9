"""Helpers every pipeline component shares: flags, progress lines, outputs and the run log.

A component is a job that Atomflow launches as a process. Its parameters arrive as
`--name=value` flags, its outputs go as one JSON object to the file named by the
ATOMFLOW_OUTPUTS environment variable, and ATOMFLOW_JOB_ID names the job.
"""

import argparse
import json
import os
import sys


def parse_flags(description, flags):
    """Parses `--name=value` flags; `flags` maps each name to (type, required)."""
    parser = argparse.ArgumentParser(description=description)
    for name, (kind, required) in flags.items():
        parser.add_argument("--" + name, type=kind, required=required)
    return parser.parse_args()


def progress(message):
    """Prints one progress line; Atomflow shows it under the step that runs the job.

    The job outlives an Atomflow process that is killed, so a closed output must not stop it.
    """
    try:
        print(message, flush=True)
    except OSError:
        pass


def fail(where, what):
    """Reports an input error as `ERROR: <file>:<line>: <what>` and exits with status 1."""
    try:
        print(f"ERROR: {where}: {what}", file=sys.stderr, flush=True)
    except OSError:
        pass
    sys.exit(1)


def record_start(work_dir, component):
    """Appends `<job id> <component>` to <work_dir>/runs.log so tests can count launches."""
    job_id = os.environ.get("ATOMFLOW_JOB_ID", "-")
    with open(os.path.join(work_dir, "runs.log"), "a", encoding="utf-8") as log:
        log.write(f"{job_id} {component}\n")


def write_outputs(outputs):
    """Writes the job's outputs atomically, so a crash never leaves half a JSON file."""
    path = os.environ.get("ATOMFLOW_OUTPUTS")
    if not path:
        print(json.dumps(outputs, indent=2))
        return
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(outputs, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def write_atomically(path, write):
    """Calls write(file) on a temporary sibling of path, then renames it into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    with open(partial, "wb") as out:
        write(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
