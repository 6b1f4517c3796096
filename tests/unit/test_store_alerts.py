"""The job record keeps one entry per alert event, even when a grouped alert grew while watched."""

from __future__ import annotations

from pathlib import Path

from mfctl.records.store import JobStore


def spike(ranks: list[int]) -> dict:
    return {"kind": "spike", "rank": None, "step": 12, "time": 100.0, "ranks": ranks, "count": len(ranks),
            "message": f"ranks {ranks[0]}-{ranks[-1]} ({len(ranks)}): global_norm 4.59x", "last_time": 101.0}


def test_a_grouped_alert_saved_as_it_grew_is_one_event_with_every_rank(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add_alerts("j", [spike([0, 1])])
    store.add_alerts("j", [{"kind": "straggler", "rank": 3, "step": 14, "time": 105.0, "ranks": [3],
                            "count": 1, "message": "rank 3 slow"}])
    store.add_alerts("j", [spike(list(range(1024)))])
    alerts = store.alerts("j")
    assert [(a["kind"], a["count"]) for a in alerts] == [("spike", 1024), ("straggler", 1)]


def test_distinct_events_of_one_kind_stay_apart(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add_alerts("j", [spike([0, 1]), {**spike([0, 1]), "step": 40, "time": 200.0}])
    supervisor = {"kind": "supervisor", "rank": None, "step": 40, "time": 200.0, "message": "stopped"}
    store.add_alerts("j", [supervisor, supervisor])
    assert [(a["kind"], a["step"]) for a in store.alerts("j")] == [
        ("spike", 12), ("spike", 40), ("supervisor", 40), ("supervisor", 40)]
