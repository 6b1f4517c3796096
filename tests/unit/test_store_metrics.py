"""The job record's steps: saved in one transaction, read back oldest first, in new and old stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mfctl.records.store import JobStore

ROWS = [(0, 1, 3, 2.5, 510.0, 31.0, 100.0), (1, 1, 3, 2.6, 512.0, 30.5, 100.0),
        (0, 2, 3, 2.4, 505.0, 31.2, 101.0), (1, 2, 3, None, None, None, 101.5)]

# The metrics table as stores created before the WITHOUT ROWID one have it.
OLD_METRICS = """CREATE TABLE metrics (job_id TEXT NOT NULL, rank INTEGER NOT NULL, step INTEGER NOT NULL,
    total_steps INTEGER, loss REAL, step_time_ms REAL, samples_per_s REAL, time REAL NOT NULL,
    PRIMARY KEY (job_id, rank, step))"""


def saved_again(store: JobStore) -> list[tuple]:
    store.add_metrics("j", ROWS[2:])
    store.add_metrics("j", ROWS[:2])
    store.add_metrics("k", ROWS[:1])
    store.add_metrics("j", [(1, 2, 3, 2.45, 508.0, 30.9, 101.5)])  # a step seen again replaces it
    return list(store.metrics("j"))


EXPECTED = [ROWS[0], ROWS[1], ROWS[2], (1, 2, 3, 2.45, 508.0, 30.9, 101.5)]


def test_a_new_store_keeps_every_step_once_oldest_first(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    assert saved_again(store) == EXPECTED
    store.close()
    assert list(JobStore(tmp_path).metrics("k")) == [ROWS[0]]


def test_a_store_made_before_keeps_its_steps_and_takes_new_ones(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.execute(OLD_METRICS)
    db.execute("INSERT INTO metrics VALUES ('old', 0, 7, 9, 3.0, 600.0, 20.0, 50.0)")
    db.commit()
    db.close()
    store = JobStore(tmp_path)
    assert list(store.metrics("old")) == [(0, 7, 9, 3.0, 600.0, 20.0, 50.0)]
    assert saved_again(store) == EXPECTED
