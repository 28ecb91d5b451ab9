"""The ML pipeline with its model registry in PostgreSQL: registering is a prepared (2PC)
branch of the release transaction, committed with the rest or rolled back with it."""

import os
import unittest

from pipeline_harness import PipelineTestCase
from postgres_cluster import PostgresCluster


class PostgresRegistryTest(PipelineTestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = PostgresCluster()
        cls.count = 0

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def setUp(self):
        super().setUp()
        PostgresRegistryTest.count += 1
        self.database = f"registry_{PostgresRegistryTest.count}"
        self.cluster.query("postgres", f"CREATE DATABASE {self.database}")
        # The workflow names the database "registry"; the connection string comes from here.
        os.environ["ATOMFLOW_DATABASE_REGISTRY"] = self.cluster.uri(self.database)
        self.addCleanup(os.environ.pop, "ATOMFLOW_DATABASE_REGISTRY", None)

    def pg_rows(self):
        text = self.cluster.query(self.database, "SELECT run_id || ' ' || version FROM models")
        return dict((line.split()[0], int(line.split()[1])) for line in text.splitlines())

    def prepared(self):
        return self.cluster.query("postgres", "SELECT count(*) FROM pg_prepared_xacts")

    def test_release_commits_the_registry_row_with_the_deployment(self):
        outcome = self.run_pipeline(self.pipeline_args(registry_database="registry"))

        result = self.assert_succeeded(outcome)
        self.assertEqual(self.pg_rows(), {result["run_id"]: 1})
        self.assertEqual(result["version"], 1)
        self.assertIsNone(result["jobs"]["register"])
        self.assertTrue(os.path.isfile(result["model_path"]))
        self.assertEqual(self.server.current_model()["run_id"], result["run_id"])
        self.assertEqual(self.prepared(), "0")
        self.assertEqual(self.registry_rows(), {})  # the SQLite registry was not touched

    def test_failed_smoke_test_rolls_the_prepared_registry_row_back(self):
        outcome = self.run_pipeline(
            self.pipeline_args(registry_database="registry", fail_at="smoke_test"))

        self.assert_aborted(outcome)
        self.assertEqual(self.pg_rows(), {})
        self.assertEqual(self.prepared(), "0")
        self.assertEqual(self.published_runs(), [])
        self.assertIsNone(self.server.current_model()["run_id"])


if __name__ == "__main__":
    unittest.main()
