"""Node operations over a scripted transport: push, start and stop commands, process and status
parsing, preflight facts -> problems, and the hosts backend putting them together.

The same operations run against real nodes in tests/integration (local jobs, the sshd cluster);
these pin down what is built and how each answer is read, one case at a time.
"""

from __future__ import annotations

import hashlib
import shlex

import pytest

from mfctl.cluster.health import JobState, Memory, judge
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.layout import Layout
from mfctl.cluster.plan import build_plan
from mfctl.errors import OperationFailed
from mfctl.jobs.backend import HostsBackend
from mfctl.jobs.checkpoints import common_checkpoint, has_checkpoint
from mfctl.jobs.nodeops import (
    describe_error,
    node_status,
    preflight,
    push_bundle,
    start_command,
    stop_node,
)
from mfctl.jobspec.schema import parse_spec
from mfctl.remote.base import NodeUnreachable
from mfctl.remote.connect import SshOptions
from tests.fakes.transport import ScriptedTransport
from tests.lab.ascend import recorded

SPEC = parse_spec("name: j\nmodel: tiny-llama\ndataset: /data/wiki.mindrecord\npython: /opt/py/bin/python\n")
HOSTS = [HostEntry("n1", slots=2, line=1), HostEntry("n2", slots=2, line=2)]
PLAN = build_plan(SPEC, HOSTS, Layout(4, 1, 1, 1), "/local/j")


def backend(*transports: ScriptedTransport) -> HostsBackend:
    return HostsBackend(PLAN, HOSTS, "/local/j", SshOptions(), SPEC.python, None,
                        transports={t.host: t for t in transports})


# --------------------------------------------------------------------------- push

FILES = {"config.yaml": (b"model: x\n", 0o644), "launch.sh": (b"#!/bin/sh\nexec msrun\n", 0o755),
         "node/train.py": (b"print('train')\n", 0o644)}


def test_push_copies_every_file_with_its_mode_into_a_private_job_dir() -> None:
    t = ScriptedTransport("n1").on(r"^umask 077; mkdir -p ")
    copied = push_bundle(t, "mfctl-jobs/my job", FILES)
    assert copied == 3
    assert {p: mode for p, (_, mode) in t.files.items()} == {
        "mfctl-jobs/my job/bundle/config.yaml": 0o644, "mfctl-jobs/my job/bundle/launch.sh": 0o755,
        "mfctl-jobs/my job/bundle/node/train.py": 0o644}
    assert t.files["mfctl-jobs/my job/bundle/launch.sh"][0] == FILES["launch.sh"][0]
    prep = t.commands[0]
    assert "'mfctl-jobs/my job/bundle/node'" in prep and "chmod 700 'mfctl-jobs/my job'" in prep


def test_push_skips_files_whose_checksum_matches_on_the_node() -> None:
    same = hashlib.sha256(FILES["config.yaml"][0]).hexdigest()
    stale = hashlib.sha256(b"old launch script").hexdigest()
    sums = f"{same}  jd/bundle/config.yaml\n{stale}  jd/bundle/launch.sh\n"
    t = ScriptedTransport("n1").on(r"sha256sum", stdout=sums)
    ticks: list[int] = []
    assert push_bundle(t, "jd", FILES, on_file=lambda: ticks.append(1)) == 2
    assert set(t.files) == {"jd/bundle/launch.sh", "jd/bundle/node/train.py"}
    assert len(ticks) == 3  # the progress bar counts every file, copied or not


def test_push_refuses_when_the_job_dir_cannot_be_made() -> None:
    t = ScriptedTransport("n1").on(r"mkdir", exit_code=1, stderr="mkdir: Permission denied")
    with pytest.raises(OperationFailed, match="n1: cannot create jd: mkdir: Permission denied"):
        push_bundle(t, "jd", FILES)
    assert t.files == {}


# --------------------------------------------------------------------------- start / stop

def test_start_command_quotes_every_value_and_detaches() -> None:
    cmd = start_command("mfctl-jobs/my job", "output/msrun_log", "j-2026'x")
    lines = cmd.splitlines()
    assert lines[0] == "cd 'mfctl-jobs/my job' || exit 97"
    # A stop that came first wins: the start refuses when run/stopped names this job.
    assert shlex.quote("j-2026'x") in lines[1] and "refused stopped" in lines[1]
    assert any(line.startswith("MFCTL_JOB='j-2026'\"'\"'x' nohup setsid sh bundle/launch.sh") for line in lines)
    assert lines[-1] == "echo started $!"
    # An earlier run's logs are kept, renamed after the job that wrote them.
    assert "mv output/msrun_log output/msrun_log." in cmd


@pytest.mark.parametrize(("stdout", "left"), [("stopping 3\nleft 0\n", 0), ("left 2\nleft 1\n", 1)])
def test_stop_reads_how_many_processes_are_left(stdout: str, left: int) -> None:
    t = ScriptedTransport("n1").on(r"nodectl|stop", stdout=stdout)
    assert stop_node(t, "j-1", grace=3, job_dir="jd") == left
    argv = shlex.split(t.commands[0])
    assert argv[-4:] == ["stop", "j-1", "3", "jd"]


def test_stop_without_a_report_is_an_error_naming_the_node() -> None:
    t = ScriptedTransport("n2").on(r".", stdout="", stderr="sh: kill: no such process")
    with pytest.raises(OperationFailed, match="n2: stop did not report"):
        stop_node(t, "j-1")


# --------------------------------------------------------------------------- status

STATUS = """proc 4100 4100 S 20 - - sh bundle/launch.sh
proc 4101 4100 Sl 19 - - python msrun --worker_num 4
proc 4110 4110 Rl 18 MS_WORKER 2 python bundle/node/train.py
proc 4111 4111 Rl 18 MS_WORKER 3 python bundle/node/train.py
started_at 1764400000
log worker_2.log 5120
log scheduler.log 99
line worker_2.log step:[ 3/40], loss: 6.5
"""


def test_node_status_reads_processes_exit_code_and_log_tails() -> None:
    t = ScriptedTransport("n2").on(r"status", stdout=STATUS)
    st = node_status(t, "j-1", PLAN.nodes[1])
    assert st.alive and st.workers() == {2, 3} and st.ranks == (2, 3)
    assert st.exit_code is None and st.started_at == 1764400000.0
    assert st.logs == {"worker_2.log": 5120, "scheduler.log": 99}
    assert st.lines == [("worker_2.log", "step:[ 3/40], loss: 6.5")]
    argv = shlex.split(t.commands[0])
    assert argv[-4:] == ["status", "j-1", "mfctl-jobs/j", "output/msrun_log"]


def test_backend_statuses_feed_judge_an_unreachable_node_and_a_failed_one() -> None:
    n1 = ScriptedTransport("n1").on(r"status", stdout="exit_code 1\n")
    n2 = ScriptedTransport("n2", unreachable=True)
    statuses = backend(n1, n2).statuses("j-1")
    assert [s.host for s in statuses] == ["n1", "n2"]
    assert statuses[1].reachable is False and statuses[1].error == "unreachable: connection refused"
    v = judge(statuses, None, Memory(), 0.0)
    assert (v.state, v.rule, v.host, v.exit_code) == (JobState.FAILED, "msrun_exit", "n1", 1)


def test_backend_start_reports_every_node_that_did_not_start() -> None:
    n1 = ScriptedTransport("n1").on(r"nohup", stdout="started 4100\n")
    n2 = ScriptedTransport("n2").on(r"nohup", stdout="refused stopped\n")
    assert backend(n1, n2).start("j-1") == {"n2": "did not start"}
    assert backend(ScriptedTransport("n1", unreachable=True), n2).start("j-1")["n1"] == \
        describe_error(NodeUnreachable("n1", "connection refused"))


def test_backend_reads_the_tagged_log_lines_once_with_their_ranks() -> None:
    out = "worker_2.log\t40\tstep:[ 1/40], loss: 7.0\n#idle\nscheduler.log\t9\tWorker process 4110 exit\n" \
          "launch.out\t12\tkill all workers\n"
    n1 = ScriptedTransport("n1").on(r"logtail|--once", stdout="")
    n2 = ScriptedTransport("n2").on(r"--once", stdout=out)
    got = backend(n1, n2).read_logs()
    assert got.ok["n1"] == []
    assert [(line.node, line.rank, line.text) for line in got.ok["n2"]] == [
        ("n2", 2, "step:[ 1/40], loss: 7.0"), ("n2", None, "Worker process 4110 exit"),
        ("n2", None, "kill all workers")]
    argv = shlex.split(n2.commands[0])
    assert argv[0] == "/opt/py/bin/python" and "mfctl-jobs/j/output/msrun_log" in argv
    assert "--extra=launch.out=mfctl-jobs/j/run/launch.out" in argv


# --------------------------------------------------------------------------- checkpoints

def _record():
    from mfctl.records.record import JobRecord, hosts_of

    return JobRecord(id="j-1", name="j", job_dir="/local/j", transport="ssh", spec={"output_dir": "output"},
                     plan=PLAN, hosts=hosts_of(HOSTS))


def test_resume_picks_the_newest_step_every_rank_saved() -> None:
    n1 = ScriptedTransport("n1").on(r"ls -d", stdout="rank_0/llama_rank_0-1_10.ckpt rank_0/llama_rank_0-1_20.ckpt\n"
                                                      "rank_1/llama_rank_1-1_10.ckpt rank_1/llama_rank_1-1_20.ckpt\n")
    n2 = ScriptedTransport("n2").on(r"ls -d", stdout="rank_2/llama_rank_2-1_10.ckpt rank_2/llama_rank_2-1_20.ckpt\n"
                                                      "rank_3/llama_rank_3-1_10.ckpt\n")
    assert common_checkpoint(_record(), backend(n1, n2)) == "llama_rank_0-1_10.ckpt"
    assert has_checkpoint(_record(), backend(n1, n2))


def test_resume_refuses_when_a_rank_saved_nothing() -> None:
    n1 = ScriptedTransport("n1").on(r"ls -d", stdout="rank_0/l_rank_0-1_10.ckpt rank_1/l_rank_1-1_10.ckpt\n")
    n2 = ScriptedTransport("n2").on(r"ls -d", stdout="")
    with pytest.raises(OperationFailed, match=r"no checkpoint for rank\(s\) 2, 3"):
        common_checkpoint(_record(), backend(n1, n2))
    assert not has_checkpoint(_record(), backend(ScriptedTransport("n1").on("ls", ""), n2))


# --------------------------------------------------------------------------- preflight

GOOD = ("python 3.11.2\nmindspore 2.9.0\nmindformers 1.9.0\nmsrun /opt/py/bin/msrun\ndataset ok\n"
        "disk_free_kb 99999999\nport free\nstale 0\ndone 1\n")


@pytest.mark.parametrize(("facts", "problem"), [
    (GOOD, None),
    (GOOD.replace("python 3.11.2", "python MISSING"), "python '/opt/py/bin/python' not found"),
    (GOOD.replace("mindformers 1.9.0", "mindformers MISSING"), "mindformers is not installed"),
    (GOOD.replace("msrun /opt/py/bin/msrun", "msrun MISSING"), "msrun not found"),
    (GOOD.replace("dataset ok", "dataset missing"), "dataset /data/wiki.mindrecord not found"),
    (GOOD.replace("port free", "port busy"), "master port 8118 is in use"),
    (GOOD.replace("stale 0", "stale 2"), "2 process(es) of an earlier j job still run"),
    (GOOD.replace("disk_free_kb 99999999", "disk_free_kb 1024"), "only 1 MiB free"),
    (GOOD.replace("done 1\n", ""), "preflight failed"),
])
def test_preflight_facts_become_problems(facts: str, problem: str | None) -> None:
    n1 = ScriptedTransport("n1").on(r"preflight", stdout=facts)
    n2 = ScriptedTransport("n2").on(r"preflight", stdout=GOOD)
    checks = preflight(PLAN, SPEC, {"n1": n1, "n2": n2})
    # The good node is only ever told that the versions differ (a missing package is one).
    assert all("versions differ across nodes" in p for p in checks[1].problems)
    if problem is None:
        assert checks[0].ok, checks[0].problems
    else:
        assert any(problem in p for p in checks[0].problems), checks[0].problems


def test_preflight_refuses_different_framework_versions_across_nodes() -> None:
    n1 = ScriptedTransport("n1").on(r"preflight", stdout=GOOD)
    n2 = ScriptedTransport("n2").on(r"preflight", stdout=GOOD.replace("mindspore 2.9.0", "mindspore 2.8.0"))
    checks = preflight(PLAN, SPEC, {"n1": n1, "n2": n2})
    assert all("versions differ across nodes" in c.problems[-1] for c in checks)


def test_preflight_reports_an_unreachable_node_and_checks_the_others() -> None:
    n1 = ScriptedTransport("n1", unreachable=True)
    n2 = ScriptedTransport("n2").on(r"preflight", stdout=GOOD)
    checks = preflight(PLAN, SPEC, {"n1": n1, "n2": n2})
    assert checks[0].problems == ["unreachable: connection refused"] and checks[1].ok


def _ascend_facts(ip_net: int) -> str:
    """A node's facts: a real 8-NPU ``npu-smi info``, device NICs up at 10.0.<ip_net>.<device>."""
    table = recorded("npu-smi_info_910A_8card_npu-smi-24.1.0.txt")
    info = "".join(f"@npu_info {line}\n" for line in table.splitlines())
    nets = "".join(f"@link.{d} link status: UP\n@net_health.{d} net health status: Success\n"
                   f"@ip.{d} ipaddr:10.0.{ip_net}.{d}\n" for d in range(8))
    return (GOOD.replace("done 1\n", "") + "npu_smi /usr/local/sbin/npu-smi\n" + info
            + "hccn_tool /usr/local/Ascend/driver/tools/hccn_tool\n" + nets + "done 1\n")


def test_network_check_pings_the_jobs_devices_on_the_next_node() -> None:
    ok = "".join(f"@ping.{d} 3 packets transmitted, 3 received, 0.00% packet loss\n" for d in range(2))
    n1 = ScriptedTransport("n1").on(r"-ping -g address", stdout=ok).on(r"preflight", stdout=_ascend_facts(1))
    n2 = ScriptedTransport("n2").on(r"-ping -g address", stdout=ok).on(r"preflight", stdout=_ascend_facts(2))
    checks = preflight(PLAN, SPEC, {"n1": n1, "n2": n2}, ascend=True, network=True)
    assert all(c.ok for c in checks), [c.problems for c in checks]
    # The job uses devices 0 and 1 (slots=2); each node pings them on the next (the last: the first).
    ping1 = next(c for c in n1.commands if "-ping" in c)
    ping2 = next(c for c in n2.commands if "-ping" in c)
    assert "/usr/local/Ascend/driver/tools/hccn_tool -i 0 -ping -g address 10.0.2.0" in ping1
    assert "-i 1 -ping -g address 10.0.2.1" in ping1 and "-i 2 " not in ping1
    assert "-i 0 -ping -g address 10.0.1.0" in ping2
    assert not [c for c in n1.commands if "-ping" in c and c is not ping1]  # one more round trip, no more


def test_network_check_fails_both_nodes_of_a_pair_that_lost_packets() -> None:
    ok = "@ping.0 3 packets transmitted, 3 received\n@ping.1 3 packets transmitted, 3 received\n"
    lossy = "@ping.1 3 packets transmitted, 1 received, 66.67% packet loss\n@ping.0 3 packets transmitted, 3 received\n"
    n1 = ScriptedTransport("n1").on(r"-ping -g address", stdout=ok).on(r"preflight", stdout=_ascend_facts(1))
    n2 = ScriptedTransport("n2").on(r"-ping -g address", stdout=lossy).on(r"preflight", stdout=_ascend_facts(2))
    checks = preflight(PLAN, SPEC, {"n1": n1, "n2": n2}, ascend=True, network=True)
    want = "NPU 1 -> n1 NPU 1 (10.0.1.1): 2 of 3 packets lost; check the device network between them"
    for c in checks:
        assert [p for p in c.problems if p.startswith(want)], c.problems
    assert checks[0].npu is not None and [c["id"] for c in checks[0].npu["chips"]] == list(range(8))
    assert checks[0].to_json()["npu"]["links"][1] == {"device": 1, "link": "UP", "net_health": "Success",
                                                       "ip": "10.0.1.1"}
