"""Register: records a trained model in the registry and outputs its version.

The version is one more than the highest registered so far. Running it again for the same
run (a retried or resumed job) returns the row already there instead of adding a second one.
"""

import datetime

from common import parse_flags, progress, record_start, write_outputs
from registry import connect


def register(connection, flags):
    """Returns (version, created) for the run, inserting its row when absent."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        row = connection.execute("SELECT version FROM models WHERE run_id = ?",
                                 (flags.run_id,)).fetchone()
        if row:
            connection.execute("COMMIT")
            return row[0], False

        next_version = "SELECT COALESCE(MAX(version), 0) + 1 FROM models"
        version = connection.execute(next_version).fetchone()[0]
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        connection.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                           (flags.run_id, version, flags.accuracy, flags.auc, flags.model_path,
                            created))
        connection.execute("COMMIT")
        return version, True
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def main():
    flags = parse_flags(__doc__, {"registry": (str, True), "run_id": (str, True),
                                  "accuracy": (float, True), "auc": (float, True),
                                  "model_path": (str, True), "work_dir": (str, True)})
    record_start(flags.work_dir, "register")
    version, inserted = register(connect(flags.registry), flags)
    verb = "registered" if inserted else "already registered"
    progress(f"{verb} run {flags.run_id} as version {version} in {flags.registry}")
    write_outputs({"version": version})


if __name__ == "__main__":
    main()
