"""Train: fits a logistic regression on the scaled training split.

Pickles {"scaler", "model"} to model.pkl under the job's temp location; the model server
loads that file as is and applies the scaler to raw rows before predicting.
"""

import os
import pickle

import numpy as np
from sklearn.linear_model import LogisticRegression

from common import parse_flags, progress, record_start, write_atomically, write_outputs


def main():
    flags = parse_flags(__doc__, {"train_path": (str, True), "scaler_path": (str, True),
                                  "work_dir": (str, True), "temp_location": (str, True),
                                  "c": (float, False)})
    record_start(flags.work_dir, "train")
    train = np.load(flags.train_path)
    regularization = flags.c or 1.0
    progress(f"fitting LogisticRegression(C={regularization}) on {len(train['y'])} rows")

    model = LogisticRegression(C=regularization, max_iter=1000).fit(train["X"], train["y"])
    train_accuracy = float(model.score(train["X"], train["y"]))
    progress(f"training accuracy {train_accuracy:.4f}")

    with open(flags.scaler_path, "rb") as source:
        scaler = pickle.load(source)
    model_path = os.path.join(flags.temp_location, "model.pkl")
    write_atomically(model_path, lambda out: pickle.dump({"scaler": scaler, "model": model}, out))
    progress(f"wrote {model_path}")
    write_outputs({"model_path": model_path, "train_accuracy": round(train_accuracy, 4)})


if __name__ == "__main__":
    main()
