"""The model registry: one SQLite table, `models`, one row per registered run."""

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
  run_id     TEXT PRIMARY KEY,
  version    INTEGER NOT NULL UNIQUE,
  accuracy   REAL NOT NULL,
  auc        REAL NOT NULL,
  model_path TEXT NOT NULL,
  created    TEXT NOT NULL
)
"""


def connect(path):
    """Opens the registry, creating the table on first use."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(SCHEMA)
    return connection
