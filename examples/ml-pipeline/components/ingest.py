"""Ingest: validates the breast-cancer CSV and copies it into the data lake for this run.

The file has a header `<rows>,<features>,<class 0 name>,<class 1 name>` and then one row per
sample: the features as numbers and a 0/1 label. The first problem found is reported as
`ERROR: <file>:<line>: <what>` on stderr with exit status 1, and nothing is written.
"""

import math
import os
import shutil

from common import fail, parse_flags, progress, record_start, write_atomically, write_outputs

EXPECTED_FEATURES = 30


def parse_header(path, line):
    """Returns (rows, features) from the header line, or fails with the header's position."""
    fields = line.rstrip("\n").split(",")
    if len(fields) != 4 or not fields[0].isdigit() or not fields[1].isdigit():
        fail(f"{path}:1", "expected header '<rows>,<features>,<name 0>,<name 1>'")
    rows, features = int(fields[0]), int(fields[1])
    if features != EXPECTED_FEATURES:
        fail(f"{path}:1", f"header declares {features} features, expected {EXPECTED_FEATURES}")
    return rows, features


def check_row(path, number, line, features):
    """Returns the row's label after checking its column count, numbers and label."""
    fields = line.rstrip("\n").split(",")
    if len(fields) != features + 1:
        fail(f"{path}:{number}", f"expected {features + 1} columns, found {len(fields)}")

    for column, text in enumerate(fields[:-1], start=1):
        try:
            value = float(text)
        except ValueError:
            fail(f"{path}:{number}", f"column {column} is not a number: {text!r}")
        if not math.isfinite(value):
            fail(f"{path}:{number}", f"column {column} is not finite: {text!r}")

    if fields[-1].strip() not in ("0", "1"):
        fail(f"{path}:{number}", f"label must be 0 or 1, found {fields[-1]!r}")
    return int(fields[-1])


def validate(path):
    """Checks the whole file; returns (rows, positives)."""
    if not os.path.isfile(path):
        fail(path, "file not found")
    with open(path, encoding="utf-8") as source:
        declared, features = parse_header(path, source.readline())
        rows = positives = 0
        for number, line in enumerate(source, start=2):
            if not line.strip():
                continue
            positives += check_row(path, number, line, features)
            rows += 1

    if rows != declared:
        fail(f"{path}:1", f"header declares {declared} rows, the file has {rows}")
    return rows, positives


def main():
    flags = parse_flags(__doc__, {"data": (str, True), "work_dir": (str, True),
                                  "run_id": (str, True)})
    record_start(flags.work_dir, "ingest")
    progress(f"validating {flags.data}")
    rows, positives = validate(flags.data)
    progress(f"{rows} rows, {positives} labelled 1, {rows - positives} labelled 0")

    target = os.path.join(flags.work_dir, "lake", "raw", flags.run_id, "data.csv")
    with open(flags.data, "rb") as source:
        write_atomically(target, lambda out: shutil.copyfileobj(source, out))
    progress(f"copied to {target}")
    write_outputs({"path": target, "rows": rows, "features": EXPECTED_FEATURES,
                   "positives": positives})


if __name__ == "__main__":
    main()
