"""Kills atomflow (SIGKILL, at named fault points) in the middle of the ML pipeline, resumes the
execution, and checks that the outcome is the one an uninterrupted run has and that no job ran
twice."""

import collections
import signal
import unittest

from pipeline_harness import PipelineTestCase

# Where atomflow kills itself: while a job runs, with a transaction branch recorded but its
# effect not started, right after the commit decision, right after an effect's result is stored.
COMMIT_CRASH_POINTS = ["job_started:train", "branch:register_job", "decision", "effect:deploy"]


class CrashResumeTest(PipelineTestCase):

    def check_crash_during_release(self, point):
        outcome = self.crash_and_resume(self.pipeline_args(), point)

        result = self.assert_succeeded(outcome)
        self.assert_released(result)
        self.assertEqual(self.registry_rows(), {result["run_id"]: result["version"]})
        self.assert_no_job_ran_twice(outcome)

    def test_resume_after_crash_at_abort_decision_undoes_everything(self):
        outcome = self.crash_and_resume(self.pipeline_args(fail_at="smoke_test"), "decision")

        self.assert_aborted(outcome)
        self.assertEqual(self.registry_rows(), {})
        self.assertEqual(self.published_runs(), [])
        self.assertIsNone(self.server.current_model()["run_id"])
        launched = [component for _, component in self.job_launches()]
        self.assertEqual(launched.count("unregister"), 1)
        self.assert_no_job_ran_twice(outcome)

    def crash_and_resume(self, args, point):
        """Runs the pipeline until atomflow kills itself at point, then resumes it."""
        crashed = self.run_pipeline(args, crash_at=point)
        self.assertEqual(crashed.returncode, -signal.SIGKILL, crashed.describe())
        execution_id = crashed.execution_id()
        listed = self.atomflow("executions", "list", "--json").document
        self.assertIn({"id": execution_id, "state": "ACTIVE"},
                      [{"id": item["id"], "state": item["state"]} for item in listed])

        resumed = self.resume(execution_id)
        self.assertEqual(resumed.document["id"], execution_id, resumed.describe())
        return resumed

    def assert_no_job_ran_twice(self, resumed):
        """Every component launch has its own job id, unless atomflow said it ran it again."""
        launches = collections.Counter(job_id for job_id, _ in self.job_launches())
        reported = [line for line in resumed.stderr.splitlines()
                    if "running it again" in line or "restart" in line]
        for job_id, count in launches.items():
            if count > 1:
                self.assertTrue(any(job_id in line for line in reported),
                                f"job {job_id} ran {count} times, no restart reported\n"
                                f"{resumed.describe()}")


def add_crash_point_tests():
    """One test per crash point, each with its own folder, store and model server."""
    for point in COMMIT_CRASH_POINTS:
        name = "test_resume_after_crash_at_" + point.replace(":", "_")
        setattr(CrashResumeTest, name,
                lambda self, point=point: self.check_crash_during_release(point))


add_crash_point_tests()


if __name__ == "__main__":
    unittest.main()
