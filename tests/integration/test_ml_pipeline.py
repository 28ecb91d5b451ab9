"""End-to-end runs of examples/ml-pipeline/pipeline.yaml through the atomflow binary: a release
that commits, one whose smoke test fails and is undone, bad input data and a bad argument."""

import os
import unittest

from pipeline_harness import DATASET, PipelineTestCase


class MlPipelineTest(PipelineTestCase):

    def test_release_commits_registers_publishes_and_deploys(self):
        outcome = self.run_pipeline(self.pipeline_args())

        result = self.assert_succeeded(outcome)
        self.assertEqual(result["run_id"], outcome.execution_id())
        self.assert_released(result)
        self.assertEqual(self.registry_rows(), {result["run_id"]: result["version"]})
        self.assertEqual(set(result["jobs"]),
                         {"ingest", "preprocess", "train", "evaluate", "register"})
        self.assertNotIn("unregister", [component for _, component in self.job_launches()])

    def test_failed_smoke_test_undoes_the_release_and_restores_the_prior_model(self):
        prior = self.assert_succeeded(self.run_pipeline(self.pipeline_args()))

        outcome = self.run_pipeline(self.pipeline_args(fail_at="smoke_test"))

        self.assert_aborted(outcome)
        run_id = outcome.execution_id()
        self.assertEqual(self.registry_rows(), {prior["run_id"]: prior["version"]})
        self.assertFalse(os.path.exists(os.path.dirname(self.published_model(run_id))))
        self.assertEqual(self.published_runs(), [prior["run_id"]])
        self.assertEqual(self.server.current_model()["run_id"], prior["run_id"])
        launched = [component for _, component in self.job_launches()]
        self.assertEqual(launched.count("register"), 2)
        self.assertEqual(launched.count("unregister"), 1)

    def test_missing_data_file_fails_in_ingest(self):
        missing = os.path.join(self.root, "no-such-file.csv")

        outcome = self.run_pipeline(self.pipeline_args(data=missing))

        self.assert_failed_in_ingest(outcome)
        self.assertIn("no-such-file.csv", outcome.error.get("message", ""), outcome.describe())

    def test_malformed_row_fails_in_ingest_naming_file_and_line(self):
        malformed = os.path.join(self.root, "malformed.csv")
        with open(DATASET, encoding="utf-8") as source:
            lines = source.readlines()
        lines[41] = lines[41].replace(",", ",oops,", 1)  # line 42 gets a non-number
        with open(malformed, "w", encoding="utf-8") as out:
            out.writelines(lines)

        outcome = self.run_pipeline(self.pipeline_args(data=malformed))

        self.assert_failed_in_ingest(outcome)
        self.assertIn("malformed.csv:42", outcome.error.get("message", ""), outcome.describe())

    def test_unknown_argument_is_rejected_before_any_job(self):
        outcome = self.run_pipeline(self.pipeline_args(epochs=3))

        self.assertIn(outcome.returncode, (1, 2), outcome.describe())
        self.assertIn(outcome.state, ("FAILED", "INVALID"), outcome.describe())
        self.assertIn("unknown argument 'epochs'", outcome.error.get("message", ""))
        self.assertIn("ValueError", outcome.error.get("tags", []))
        self.assertEqual(self.job_folders(), [])
        self.assertEqual(self.job_launches(), [])

    def assert_failed_in_ingest(self, outcome):
        """Only ingest ran, and nothing was registered, published or deployed."""
        self.assertEqual(outcome.returncode, 1, outcome.describe())
        self.assertEqual(outcome.state, "FAILED", outcome.describe())
        self.assertEqual([component for _, component in self.job_launches()], ["ingest"])
        self.assertEqual(self.registry_rows(), {})
        self.assertEqual(self.published_runs(), [])
        self.assertIsNone(self.server.current_model()["run_id"])


if __name__ == "__main__":
    unittest.main()
