"""Evaluate: accuracy and ROC AUC of the trained model on the held-out test split.

Also outputs a few raw test rows with their labels, for the smoke test after deployment.
"""

import pickle

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from common import parse_flags, progress, record_start, write_outputs

SAMPLE_ROWS = 5


def main():
    flags = parse_flags(__doc__, {"model_path": (str, True), "test_path": (str, True),
                                  "work_dir": (str, True)})
    record_start(flags.work_dir, "evaluate")
    with open(flags.model_path, "rb") as source:
        model = pickle.load(source)["model"]
    test = np.load(flags.test_path)

    predicted = model.predict(test["X"])
    scores = model.predict_proba(test["X"])[:, 1]
    accuracy = round(float(accuracy_score(test["y"], predicted)), 4)
    roc_auc = round(float(roc_auc_score(test["y"], scores)), 4)
    progress(f"{len(test['y'])} test rows: accuracy {accuracy}, roc_auc {roc_auc}")

    write_outputs({
        "metrics": {"accuracy": accuracy, "roc_auc": roc_auc},
        "sample_rows": test["raw"][:SAMPLE_ROWS].tolist(),
        "sample_labels": test["y"][:SAMPLE_ROWS].astype(int).tolist(),
    })


if __name__ == "__main__":
    main()
