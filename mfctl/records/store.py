"""Job records: a small SQLite database in ``$MFCTL_HOME`` (default ``~/.mfctl``), private to the user.

One row per launch (id, spec, plan, hosts, remote paths, times, state, exit cause), plus the
metrics and events collected while it ran, so ``mfctl watch`` after a restart shows the history.
Environment values from the spec never reach this file: they may be secrets.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mfctl.cluster.health import ACTIVE_STATES, JobState
from mfctl.errors import BadInput
from mfctl.records.record import JobRecord

# The metrics table is a WITHOUT ROWID table in the stores created since: the rows live in the
# primary key's B-tree alone, instead of a rowid table plus the key's index (saving a long run's
# 768k steps took 1.3-3 s, now 1.1-1.3 s). A store created before keeps its table (CREATE ... IF NOT
# EXISTS); both read in the key's order and nothing reads the metrics' rowid.
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    transport TEXT NOT NULL,
    spec TEXT NOT NULL,
    plan TEXT NOT NULL,
    hosts TEXT NOT NULL,
    ssh TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    exit_cause TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    restarts INTEGER NOT NULL DEFAULT 0,
    resumed_from TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    step INTEGER NOT NULL,
    total_steps INTEGER,
    loss REAL,
    step_time_ms REAL,
    samples_per_s REAL,
    time REAL NOT NULL,
    PRIMARY KEY (job_id, rank, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

def mfctl_home() -> Path:
    return Path(os.environ.get("MFCTL_HOME") or Path.home() / ".mfctl")


class JobStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or mfctl_home()
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self.path = self.home / "jobs.db"
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- jobs
    def add(self, rec: JobRecord) -> None:
        row = rec.to_row()
        self._db.execute(
            "INSERT INTO jobs (id, name, job_dir, transport, spec, plan, hosts, ssh, state, exit_cause,"
            " created_at, started_at, ended_at, restarts, resumed_from)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (*row[:10], row[10] or time.time(), *row[11:]))

    def update(self, job_id: str, **values: Any) -> None:
        if not values:
            return
        cols = ", ".join(f"{k} = ?" for k in values)
        self._db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*values.values(), job_id))

    def set_state(self, job_id: str, state: JobState, cause: str | None = None) -> None:
        state = JobState(state)
        values: dict[str, Any] = {"state": str(state)}
        if cause is not None:
            values["exit_cause"] = cause
        if state not in ACTIVE_STATES:
            values["ended_at"] = time.time()
        self.update(job_id, **values)
        self.event(job_id, "state", f"{state}" + (f": {cause}" if cause else ""))

    def _row(self, row: tuple) -> JobRecord:
        return JobRecord.from_row(row)

    _COLS = ("id, name, job_dir, transport, spec, plan, hosts, ssh, state, exit_cause, created_at,"
             " started_at, ended_at, restarts, resumed_from")

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {self._COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def all(self) -> list[JobRecord]:
        rows = self._db.execute(f"SELECT {self._COLS} FROM jobs ORDER BY created_at DESC").fetchall()
        return [self._row(r) for r in rows]

    def find(self, ref: str | None, job_dir: Path | None = None) -> JobRecord:
        """A job by id, by unique id prefix or name (newest), or the newest of ``job_dir``."""
        jobs = self.all()
        if ref:
            exact = [j for j in jobs if j.id == ref]
            if exact:
                return exact[0]
            named = [j for j in jobs if j.name == ref or j.id.startswith(ref)]
            if named:
                return named[0]
            raise BadInput(f"no job {ref!r}; 'mfctl jobs' lists them")
        if job_dir is not None:
            here = [j for j in jobs if Path(j.job_dir) == job_dir.resolve()]
            if here:
                return here[0]
        raise BadInput("no job given and none launched from this directory; pass a job id "
                       "('mfctl jobs' lists them) or --dir")

    # -- metrics and events
    def add_metrics(self, job_id: str, rows: list[tuple]) -> None:
        """rows: (rank, step, total_steps, loss, step_time_ms, samples_per_s, time)."""
        if rows:
            # One transaction for the lot: in autocommit each row was one (a commit and a WAL
            # sync per step: 768k steps took 145 s, in one transaction ~1 s).
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                    [(job_id, *r) for r in rows])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def metrics(self, job_id: str) -> Iterator[tuple]:
        yield from self._db.execute(
            "SELECT rank, step, total_steps, loss, step_time_ms, samples_per_s, time FROM metrics"
            " WHERE job_id = ? ORDER BY time, rank", (job_id,))

    def add_alerts(self, job_id: str, alerts: Sequence[Mapping[str, Any]]) -> None:
        """The dashboard's alerts (kind, rank, step, message, time and whatever else an alert
        carries, such as the ranks of a grouped one), kept for ``mfctl report``."""
        if alerts:
            self._db.executemany("INSERT INTO events VALUES (?,?,?,?)", [
                (job_id, float(a.get("time") or time.time()), "alert",
                 json.dumps({k: v for k, v in a.items() if k != "time"}, default=str))
                for a in alerts])

    def alerts(self, job_id: str) -> list[dict[str, Any]]:
        """One entry per alert event, oldest first. A grouped alert that gained ranks while it was
        watched was saved again each time it grew (same kind, step and first time): the newest
        saving, with every rank, stands for it."""
        rows = self._db.execute("SELECT time, message FROM events WHERE job_id = ? AND kind = 'alert'"
                                " ORDER BY time, rowid", (job_id,)).fetchall()
        events: dict[tuple, dict[str, Any]] = {}
        for t, message in rows:
            alert = {**json.loads(message), "time": t}
            key = (alert.get("kind"), alert.get("step"), t) if "ranks" in alert else (len(events), t)
            events.pop(key, None)  # a later saving replaces it and takes its place in the order
            events[key] = alert
        return sorted(events.values(), key=lambda a: a["time"])

    def event(self, job_id: str, kind: str, message: str) -> None:
        self._db.execute("INSERT INTO events VALUES (?,?,?,?)", (job_id, time.time(), kind, message))

    def events(self, job_id: str) -> list[tuple[float, str, str]]:
        return self._db.execute("SELECT time, kind, message FROM events WHERE job_id = ? ORDER BY time",
                                (job_id,)).fetchall()
