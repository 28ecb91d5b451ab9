"""Unregister: the compensation of register; deletes the run's row from the registry.

Deleting a row that is not there succeeds, so the compensation can run any number of times,
including before register ever ran.
"""

from common import parse_flags, progress, record_start, write_outputs
from registry import connect


def main():
    flags = parse_flags(__doc__, {"registry": (str, True), "run_id": (str, True),
                                  "work_dir": (str, True)})
    record_start(flags.work_dir, "unregister")
    deleted = connect(flags.registry).execute("DELETE FROM models WHERE run_id = ?",
                                              (flags.run_id,)).rowcount
    progress(f"removed {deleted} registry row(s) for run {flags.run_id}")
    write_outputs({"deleted": deleted})


if __name__ == "__main__":
    main()
