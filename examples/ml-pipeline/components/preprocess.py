"""Preprocess: a stratified train/test split with a fixed seed, then standard scaling.

Writes train.npz and test.npz (scaled features X, labels y) and scaler.pkl under the job's
temp location; the raw test rows are kept too, so a smoke test can send them to a server.
"""

import os
import pickle

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from common import parse_flags, progress, record_start, write_atomically, write_outputs

SEED = 42


def load(path):
    """Returns (features, labels) from a validated CSV (its header line skipped)."""
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return table[:, :-1], table[:, -1].astype(int)


def save_split(path, features, labels, raw):
    write_atomically(path, lambda out: np.savez(out, X=features, y=labels, raw=raw))


def main():
    flags = parse_flags(__doc__, {"data": (str, True), "work_dir": (str, True),
                                  "temp_location": (str, True), "test_size": (float, False)})
    record_start(flags.work_dir, "preprocess")
    features, labels = load(flags.data)
    test_size = flags.test_size or 0.25

    raw_train, raw_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_size, stratify=labels, random_state=SEED)
    progress(f"split {len(labels)} rows: {len(y_train)} train, {len(y_test)} test "
             f"(stratified, seed {SEED})")

    scaler = StandardScaler().fit(raw_train)
    train_path = os.path.join(flags.temp_location, "train.npz")
    test_path = os.path.join(flags.temp_location, "test.npz")
    scaler_path = os.path.join(flags.temp_location, "scaler.pkl")
    save_split(train_path, scaler.transform(raw_train), y_train, raw_train)
    save_split(test_path, scaler.transform(raw_test), y_test, raw_test)
    write_atomically(scaler_path, lambda out: pickle.dump(scaler, out))
    progress(f"scaled {raw_train.shape[1]} features; wrote {train_path} and {test_path}")

    write_outputs({"train_path": train_path, "test_path": test_path,
                   "scaler_path": scaler_path, "train_rows": len(y_train),
                   "test_rows": len(y_test)})


if __name__ == "__main__":
    main()
