from __future__ import annotations

import shlex

import pytest

from mfctl.cluster.hostfile import HostEntry, localhost_entries
from mfctl.cluster.layout import Layout
from mfctl.cluster.plan import build_plan
from mfctl.errors import BadInput
from mfctl.jobspec.schema import parse_spec

SPEC = "name: j\nmodel: llama3-70b\ndataset: /data/wiki4096.mindrecord\n"


def entries(n: int, slots: int = 8) -> list[HostEntry]:
    return [HostEntry(f"node{i + 1}", slots=slots, line=i + 1) for i in range(n)]


@pytest.mark.parametrize("n_nodes, slots", [(1, 8), (2, 8), (8, 8), (64, 8), (2, 1)])
def test_ranks_follow_hostfile_order(n_nodes: int, slots: int) -> None:
    spec = parse_spec(SPEC)
    world = n_nodes * slots
    plan = build_plan(spec, entries(n_nodes, slots), Layout(world, 1, 1, 1), "/jobs/j")
    assert plan.world_size == world
    assert plan.master_addr == "node1"
    assert [n.node_rank for n in plan.nodes] == list(range(n_nodes))
    assert [n.host for n in plan.nodes] == [f"node{i + 1}" for i in range(n_nodes)]
    all_ranks = [r for n in plan.nodes for r in n.ranks]
    assert all_ranks == list(range(world))
    for node in plan.nodes:
        argv = shlex.split(node.command)
        assert argv[0] == "msrun"
        assert argv[argv.index("--node_rank") + 1] == str(node.node_rank)
        assert argv[argv.index("--worker_num") + 1] == str(world)
        assert argv[argv.index("--local_worker_num") + 1] == str(slots)
        assert argv[argv.index("--master_addr") + 1] == "node1"
        assert argv[argv.index("--join") + 1] == "True"
        assert "--train_dataset_dir" in argv and "/data/wiki4096.mindrecord" in argv


def test_master_addr_override_and_resolver() -> None:
    spec = parse_spec(SPEC)
    plan = build_plan(spec, entries(2), Layout(2, 8, 1, 1), "/j", resolve=lambda e: "10.1.0." + e.host[-1])
    assert plan.master_addr == "10.1.0.1"
    plan = build_plan(spec, entries(2), Layout(2, 8, 1, 1), "/j", master_addr="192.0.2.7")
    assert plan.master_addr == "192.0.2.7"
    assert all("--master_addr 192.0.2.7" in n.command for n in plan.nodes)


def test_mindformers_launcher_shape() -> None:
    spec = parse_spec(SPEC + "launcher: mindformers\nmindformers_home: /opt/mindformers\n")
    plan = build_plan(spec, entries(8), Layout(1, 8, 8, 256), "/j")
    node = plan.nodes[3]
    argv = shlex.split(node.command)
    # MindFormers' launcher and entry by absolute path ($MF_HOME, set by the launch script), run
    # from the job dir, so its relative log dir and output/ are the job's, as with launcher msrun.
    assert argv[:2] == ["bash", "$MF_HOME/scripts/msrun_launcher.sh"]
    assert node.cwd == node.job_dir == "mfctl-jobs/j" and node.log_dir == "output/msrun_log"
    order = argv[2].split()
    assert order[0] == "$MF_HOME/run_mindformer.py"
    assert order[order.index("--config") + 1] == "$JOB_DIR/bundle/config.yaml"
    assert order[order.index("--train_dataset_dir") + 1] == "/data/wiki4096.mindrecord"
    assert order[order.index("--output_dir") + 1] == "$JOB_DIR/output"
    assert "--use_parallel" in order and "--run_mode" in order and "--load_checkpoint" not in order
    # The 9-argument form; JOIN True keeps msrun in the foreground for status, stop and supervise.
    assert argv[3:] == ["64", "8", "node1", "8118", "3", "output/msrun_log", "True", "600"]


def test_mindformers_launcher_resume_and_register_path() -> None:
    spec = parse_spec(SPEC + "launcher: mindformers\nmindformers_home: mf\nregister_path: research/x\n")
    plan = build_plan(spec, entries(2), Layout(2, 8, 1, 1), "/j", resume="j_rank_0-1_20.ckpt")
    order = shlex.split(plan.nodes[0].command)[2].split()
    assert order[order.index("--register_path") + 1] == "research/x"
    assert order[order.index("--load_checkpoint") + 1] == "$JOB_DIR/output/checkpoint"
    assert order[order.index("--resume_training") + 1] == "j_rank_0-1_20.ckpt"


@pytest.mark.parametrize("extra, word", [
    ("mindformers_home: /opt/my mindformers\n", "mindformers_home"),
    ("mindformers_home: /opt/mf\nmaster_addr: 'a;b'\n", "master_addr"),
    ("mindformers_home: /opt/mf\noutput_dir: 'out put'\n", "output_dir"),
    ("mindformers_home: /opt/mf\nworkdir: 'my jobs'\n", "job dir"),
])
def test_mindformers_launcher_refuses_what_it_would_split(extra: str, word: str) -> None:
    spec = parse_spec(SPEC + "launcher: mindformers\n" + extra)
    with pytest.raises(BadInput, match=f"^{word} .* shell characters"):
        build_plan(spec, entries(2), Layout(2, 8, 1, 1), "/j")


def test_mindformers_launcher_refuses_one_worker() -> None:
    spec = parse_spec(SPEC + "launcher: mindformers\nmindformers_home: /opt/mf\n")
    with pytest.raises(BadInput, match="at least 2 workers"):
        build_plan(spec, entries(1, slots=1), Layout(1, 1, 1, 1), "/j")


def test_local_plan_uses_loopback_and_job_dir() -> None:
    spec = parse_spec("name: t\nmodel: tiny-llama\ndataset: data/x.mindrecord\ndevices_per_node: 2\n")
    plan = build_plan(spec, localhost_entries(), Layout(2, 1, 1, 1), "/home/u/t")
    assert plan.local and plan.master_addr == "127.0.0.1" and plan.nodes[0].job_dir == "/home/u/t"


def test_values_are_quoted_literally() -> None:
    spec = parse_spec("name: j\nmodel: llama2-7b\ndataset: '/data/my set;$(touch pwned)'\n")
    plan = build_plan(spec, entries(1), Layout(8, 1, 1, 1), "/j")
    argv = shlex.split(plan.nodes[0].command)
    assert "/data/my set;$(touch pwned)" in argv


def _plan_with_batch(hosts: list[HostEntry]):
    from mfctl.cluster.batch import plan_batch

    spec = parse_spec(SPEC)
    world = 8 * len(hosts)
    layout = Layout(1, 8, len(hosts), 16)
    layout, batch, _ = plan_batch(layout, layout, batch_size=1, grad_accum=1, interleave=1, semi_auto=True,
                                  seq_length=4096, grad_accum_fixed=False, micro_batch_num_fixed=True)
    return build_plan(spec, hosts, layout, "/jobs/j", layout_note="kept the recipe", batch=batch), world


@pytest.mark.parametrize("hosts", [
    entries(2),
    [HostEntry("node1", user="ops", port=2222, slots=8, line=1), HostEntry("10.0.0.2", slots=8, line=2)],
    localhost_entries(8),
])
def test_plan_json_round_trip(hosts: list[HostEntry]) -> None:
    """A job record keeps the plan as JSON; reading it back gives the same plan, typed."""
    import json

    from mfctl.cluster.plan import LaunchPlan

    plan, world = _plan_with_batch(hosts)
    data = json.loads(json.dumps(plan.to_json()))
    assert LaunchPlan.from_json(data, hosts) == plan
    # Without the entries (an old record): the nodes' entries come from their labels.
    again = LaunchPlan.from_json(data)
    assert [(n.entry.host, n.entry.user, n.entry.port) for n in again.nodes] == \
        [(e.host, e.user, e.port) for e in hosts]
    assert again.to_json() == plan.to_json() and again.local == plan.local
    assert again.node_of_rank(world - 1).host == hosts[-1].label


def test_plan_from_a_record_written_before_local_and_batch_keys() -> None:
    from mfctl.cluster.plan import LaunchPlan

    plan, _ = _plan_with_batch(localhost_entries(8))
    data = plan.to_json()
    del data["local"], data["global_batch"]
    old = LaunchPlan.from_json(data)
    assert old.local is True and old.batch is None and old.layout == plan.layout


def test_log_paths_join_the_job_dir_once() -> None:
    plan, _ = _plan_with_batch(entries(2))
    node = plan.nodes[1]
    assert node.log_path(9) == "mfctl-jobs/j/output/msrun_log/worker_9.log"
    assert node.log_path(None) == "mfctl-jobs/j/output/msrun_log/scheduler.log"
