"""``LiveSession``: one follower and one metrics state per job; ``watch --once`` reads every node's
logs once through the same collector and saves the steps with the job record."""

from __future__ import annotations

from pathlib import Path

from mfctl.cluster.health import JobState
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.layout import Layout
from mfctl.cluster.plan import build_plan
from mfctl.jobs.backend import HostsBackend
from mfctl.jobspec.schema import parse_spec
from mfctl.live.session import LiveSession
from mfctl.node.logtail import KEEP
from mfctl.records.record import JobRecord, hosts_of
from mfctl.records.store import JobStore
from mfctl.remote.connect import SshOptions
from tests.fakes.transport import ScriptedTransport

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
SPEC = parse_spec("name: s\nmodel: tiny-llama\ndataset: /d.mindrecord\ntrain:\n  seq_length: 64\n")
HOSTS = [HostEntry("n1", slots=2, line=1)]
PLAN = build_plan(SPEC, HOSTS, Layout(2, 1, 1, 1), "/local/s")


def tagged(name: str) -> str:
    """What logtail.py --once prints for one sample log: the lines KEEP lets through, tagged."""
    out, pos = [], 0
    for raw in (SAMPLES / name).read_bytes().split(b"\n")[:-1]:
        pos += len(raw) + 1
        if KEEP.search(raw):
            out.append(f"{name}\t{pos}\t{raw.decode()}")
    return "\n".join(out) + "\n"


def session(store: JobStore | None, transport: ScriptedTransport, plots: bool = True) -> LiveSession:
    record = JobRecord(id="s-1", name="s", job_dir="/local/s", transport="ssh",
                       spec=SPEC.model_dump(by_alias=True), plan=PLAN, hosts=hosts_of(HOSTS),
                       state=JobState.FINISHED)
    if store is not None:
        store.add(record)
    backend = HostsBackend(PLAN, HOSTS, "/local/s", SshOptions(), transports={"n1": transport})
    return LiveSession(record, store, backend=backend, plots=plots)


def test_read_once_gives_every_rank_and_saves_the_steps(tmp_path: Path) -> None:
    logs = tagged("worker_0.log") + tagged("worker_1.log") + tagged("scheduler.log")
    store = JobStore(tmp_path)
    s = session(store, ScriptedTransport("n1").on(r"--once", stdout=logs))
    snap = s.read_once()
    s.close()
    assert [(r["rank"], r["node"], r["state"]) for r in snap["ranks"]] == [(0, "n1", "finished"),
                                                                           (1, "n1", "finished")]
    assert snap["cluster"]["state"] == "finished" and snap["unreachable"] == {}
    steps = {(rank, step) for rank, step, *_ in store.metrics("s-1")}
    assert {step for rank, step in steps if rank == 0} == set(range(1, snap["ranks"][0]["step"] + 1))


def test_a_read_that_draws_no_plots_saves_the_same_steps_and_keeps_no_series(tmp_path: Path) -> None:
    logs = tagged("worker_0.log") + tagged("worker_1.log")
    saved: dict[bool, list[tuple]] = {}
    for plots in (True, False):
        store = JobStore(tmp_path / str(plots))
        s = session(store, ScriptedTransport("n1").on(r"--once", stdout=logs), plots=plots)
        snap = s.read_once()
        assert len(snap["ranks"]) == 2 and all(r["step"] > 0 for r in snap["ranks"])
        bands = s.history()["bands"]
        assert any(bands.values()) == plots  # the dashboard's series only when something draws them
        s.close()
        saved[plots] = [row[:6] for row in store.metrics("s-1")]
    assert saved[False] == saved[True] and len(saved[False]) > 2


def test_read_once_names_a_node_it_could_not_read(tmp_path: Path) -> None:
    s = session(None, ScriptedTransport("n1", unreachable=True))
    snap = s.read_once()
    assert snap["ranks"] == [] and "connection refused" in snap["unreachable"]["n1"]


def test_one_follower_per_session() -> None:
    s = session(None, ScriptedTransport("n1"))
    s.backend.connect = lambda host: ScriptedTransport(host)  # the follower's own connection
    try:
        first = s.start().follower
        assert s.start().follower is first and first is not None and len(first.followers) == 1
    finally:
        s.close()
