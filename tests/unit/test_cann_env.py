"""The CANN environment for the workers: ``ascend.set_env``, ``devices`` and the HCCL settings of
``env``, from the spec to the environment the node launch script gives msrun.

The launch scripts here are rendered as for a node and run for real (sh, as mfctl starts them),
with the msrun command swapped for a python that writes its environment to a file: what the
workers would inherit.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mfctl.cluster.hostfile import HostEntry, localhost_entries
from mfctl.cluster.layout import Layout
from mfctl.cluster.plan import LaunchPlan, NodePlan, build_plan
from mfctl.errors import BadInput
from mfctl.jobspec.ascend import parse_devices
from mfctl.jobspec.schema import dump_spec, parse_spec
from mfctl.render import render_launch_script

SPEC = "name: j\nmodel: tiny-llama\ndataset: /data/x.mindrecord\n"

# A stand-in of CANN's set_env.sh, written the way the real ones are: for bash (arrays, [[ ]],
# BASH_SOURCE), reading variables that may be unset, and setting defaults a job may override.
STAND_IN = """\
# stand-in for /usr/local/Ascend/ascend-toolkit/set_env.sh (written by the test)
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_libs=(lib64 lib64/plugin/opskernel)
if [[ -n "${LD_LIBRARY_PATH}" ]]; then _sep=:; else _sep=; fi
export ASCEND_TOOLKIT_HOME="$_here/latest"
export LD_LIBRARY_PATH="$ASCEND_TOOLKIT_HOME/${_libs[0]}:$ASCEND_TOOLKIT_HOME/${_libs[1]}$_sep${LD_LIBRARY_PATH}"
export ASCEND_OPP_PATH="$ASCEND_TOOLKIT_HOME/opp${ASCEND_CUSTOM_OPP_PATH:+:$ASCEND_CUSTOM_OPP_PATH}"
export HCCL_CONNECT_TIMEOUT=120
export CANN_STAND_IN_SOURCED="${CANN_STAND_IN_SOURCED}1"
"""


# --------------------------------------------------------------------------- the spec


def test_set_env_is_a_path_or_a_list() -> None:
    assert parse_spec(SPEC).ascend.set_env is None  # the default search
    one = parse_spec(SPEC + "ascend:\n  set_env: /opt/cann/set_env.sh\n")
    assert one.ascend.set_env == ["/opt/cann/set_env.sh"]
    two = parse_spec(SPEC + "ascend:\n  set_env:\n  - /a/set_env.sh\n  - ~/Ascend/nnal/atb/set_env.sh\n")
    assert two.ascend.set_env == ["/a/set_env.sh", "~/Ascend/nnal/atb/set_env.sh"]
    assert parse_spec(SPEC + "ascend:\n  set_env: []\n").ascend.set_env == []
    # Written back as given.
    assert parse_spec(dump_spec(two)).ascend.set_env == two.ascend.set_env
    assert "ascend" not in dump_spec(parse_spec(SPEC))


@pytest.mark.parametrize("value, message", [
    ('""', "has an empty path"),
    ('"/opt/a\\nb/set_env.sh"', "control character"),
    ("/usr/local/Ascend/ascend-toolkit/", "is a directory"),
    ("[1, 2]", "valid string"),
])
def test_bad_set_env_names_its_line(value: str, message: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_spec(SPEC + f"ascend:\n  set_env: {value}\n", "mfctl.yaml")
    assert str(exc.value).startswith("mfctl.yaml:5: ascend.set_env")
    assert message in str(exc.value)


@pytest.mark.parametrize("value, ids", [
    ("[0, 1, 2, 3]", [0, 1, 2, 3]),
    ("[7, 5, 6, 4]", [4, 5, 6, 7]),
    ("'0,1'", [0, 1]),
    ("3", [3]),
])
def test_devices_set_the_worker_count(value: str, ids: list[int]) -> None:
    spec = parse_spec(SPEC + f"devices: {value}\n")
    assert spec.devices == ids and spec.devices_per_node == len(ids)
    again = parse_spec(dump_spec(spec))
    assert again.devices == ids and "devices_per_node" not in dump_spec(spec)
    # Saying the same count twice is fine.
    assert parse_spec(SPEC + f"devices_per_node: {len(ids)}\ndevices: {value}\n").devices == ids


@pytest.mark.parametrize("value, line, message", [
    ("[0, 1, 1]", 4, "devices lists device 1 twice; list each device once"),
    ("[0, -1]", 4, "devices has -1: device ids are 0 or more"),
    ("[0, x]", 4, "devices has 'x', which is not a device id"),
    ("[0, 1.5]", 4, "devices has 1.5, which is not a device id"),
    ("[true]", 4, "devices has True, which is not a device id"),
    ("'0,,1'", 4, "devices has '', which is not a device id"),
    ("[]", 4, "devices lists no device"),
    ("{a: 1}", 4, "devices must be a list of device ids"),
])
def test_bad_devices_name_the_spec_line(value: str, line: int, message: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_spec(SPEC + f"devices: {value}\n", "mfctl.yaml")
    assert str(exc.value).startswith(f"mfctl.yaml:{line}: {message}"), exc.value
    assert "\n" not in str(exc.value)


def test_devices_that_disagree_with_the_rest_of_the_spec() -> None:
    with pytest.raises(BadInput, match=r"^mfctl.yaml:5: devices lists 2 device\(s\) but "
                                        r"devices_per_node is 8; drop devices_per_node"):
        parse_spec(SPEC + "devices_per_node: 8\ndevices: [0, 1]\n", "mfctl.yaml")
    with pytest.raises(BadInput, match=r"^mfctl.yaml:4: devices and env.ASCEND_RT_VISIBLE_DEVICES"):
        parse_spec(SPEC + "devices: [0, 1]\nenv:\n  ASCEND_RT_VISIBLE_DEVICES: 0,1\n", "mfctl.yaml")


def test_parse_devices_for_the_flag() -> None:
    assert parse_devices("0,1,2,3") == [0, 1, 2, 3]
    assert parse_devices(" 4, 5 ") == [4, 5]
    for text, message in (("0,0", "twice"), ("-1", "0 or more"), ("a", "not a device id"), ("", "no device")):
        with pytest.raises(ValueError, match=message):
            parse_devices(text)


@pytest.mark.parametrize("env, message", [
    ("HCCL_CONNECT_TIMEOUT: 60", "HCCL_CONNECT_TIMEOUT must be whole seconds, 120-7200, got '60'"),
    ("HCCL_CONNECT_TIMEOUT: 10m", "HCCL_CONNECT_TIMEOUT must be whole seconds"),
    ("HCCL_EXEC_TIMEOUT: -5", "HCCL_EXEC_TIMEOUT must be whole seconds, 0 or more"),
    ("HCCL_IF_IP: eth0", "HCCL_IF_IP must be the node's IP address, got 'eth0'; for an interface name "
                         "use HCCL_SOCKET_IFNAME"),
])
def test_hccl_settings_are_checked(env: str, message: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_spec(SPEC + f"env:\n  {env}\n", "mfctl.yaml")
    assert str(exc.value).startswith("mfctl.yaml:4: env ") and message in str(exc.value)


def test_hccl_settings_that_are_fine() -> None:
    spec = parse_spec(SPEC + "env:\n  HCCL_CONNECT_TIMEOUT: 1200\n  HCCL_EXEC_TIMEOUT: 0\n"
                      "  HCCL_IF_IP: 192.0.2.10\n  HCCL_SOCKET_IFNAME: enp189s0f0\n")
    assert spec.env["HCCL_CONNECT_TIMEOUT"] == "1200" and spec.env["HCCL_IF_IP"] == "192.0.2.10"


# --------------------------------------------------------------------------- the plan


def nodes(n: int, slots: int | None = None) -> list[HostEntry]:
    return [HostEntry(f"node{i + 1}", slots=slots, line=i + 1) for i in range(n)]


def test_device_list_is_each_nodes_workers() -> None:
    spec = parse_spec(SPEC + "devices: [4, 5, 6, 7]\n")
    plan = build_plan(spec, nodes(2), Layout(8, 1, 1, 1), "/j")
    assert plan.world_size == 8
    assert [(n.local_worker_num, n.ranks, n.devices) for n in plan.nodes] == [
        (4, (0, 1, 2, 3), (4, 5, 6, 7)), (4, (4, 5, 6, 7), (4, 5, 6, 7))]
    assert all("--local_worker_num 4" in n.command for n in plan.nodes)
    data = plan.to_json()
    assert data["nodes"][1]["devices"] == [4, 5, 6, 7]
    assert LaunchPlan.from_json(data).nodes[1].devices == (4, 5, 6, 7)
    # Without a list, nothing is said about devices (and plans recorded before still load).
    plain = build_plan(parse_spec(SPEC), nodes(1), Layout(8, 1, 1, 1), "/j").to_json()
    assert "devices" not in plain["nodes"][0] and LaunchPlan.from_json(plain).nodes[0].devices is None


def test_device_list_and_slots_must_agree() -> None:
    spec = parse_spec(SPEC + "devices: [0, 1]\n")
    assert build_plan(spec, nodes(2, slots=2), Layout(4, 1, 1, 1), "/j").world_size == 4
    with pytest.raises(BadInput, match=r"line 1: slots=8 but devices lists 2 device\(s\) \(0,1\)"):
        build_plan(spec, nodes(2, slots=8), Layout(16, 1, 1, 1), "/j")


def test_one_hccl_if_ip_for_many_nodes_is_refused() -> None:
    spec = parse_spec(SPEC + "env:\n  HCCL_IF_IP: 192.0.2.10\n")
    assert build_plan(spec, nodes(1), Layout(8, 1, 1, 1), "/j").nodes  # one node: its own address
    with pytest.raises(BadInput, match=r"HCCL_IF_IP is one address for all 2 nodes.*HCCL_SOCKET_IFNAME"):
        build_plan(spec, nodes(2), Layout(16, 1, 1, 1), "/j")


# --------------------------------------------------------------------------- the launch script, run


def launch_script(tmp_path: Path, extra: str, host: str = "node7") -> tuple[Path, str]:
    """A job dir with the node launch script of ``SPEC + extra`` in ``bundle/``, whose command
    writes the environment msrun would start the workers with to ``envdump.json``."""
    spec = parse_spec(SPEC + extra)
    job = tmp_path / "job"
    (job / "bundle").mkdir(parents=True)
    plan = build_plan(spec, [HostEntry(host)] if host != "localhost" else localhost_entries(),
                      Layout(spec.devices_per_node, 1, 1, 1), str(job))
    dump = shlex.join([sys.executable, "-c", "import json, os; json.dump(dict(os.environ), "
                       "open('envdump.json', 'w'))"])
    node: NodePlan = dataclasses.replace(plan.nodes[0], command=dump)
    script = render_launch_script(spec, plan, node, "j-1", "CPU")
    (job / "bundle" / "launch.sh").write_text(script)
    return job, script


def run(job: Path, *shell: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home or job.parent)}
    return subprocess.run([*(shell or ("sh",)), "bundle/launch.sh"], cwd=job, env=env,
                          capture_output=True, text=True, timeout=60)


def workers_env(job: Path) -> dict[str, str]:
    return json.loads((job / "envdump.json").read_text())


def test_set_env_is_sourced_before_msrun_and_the_job_env_wins(tmp_path: Path) -> None:
    odd = tmp_path / "opt" / "it's a $HOME dir"  # a space, a quote, a dollar
    odd.mkdir(parents=True)
    (odd / "set_env.sh").write_text(STAND_IN)
    job, script = launch_script(tmp_path, f"ascend:\n  set_env: {json.dumps(str(odd / 'set_env.sh'))}\n"
                                "devices: [2, 3]\nenv:\n  HCCL_CONNECT_TIMEOUT: 1200\n"
                                "  HCCL_EXEC_TIMEOUT: 1800\n  HCCL_SOCKET_IFNAME: eth0\n")
    # Sourced before the job's own settings, and msrun comes after all of it.
    assert script.index(". '") < script.index("export HCCL_CONNECT_TIMEOUT") < script.index(sys.executable)
    r = run(job)
    assert r.returncode == 0, r.stderr
    env = workers_env(job)
    assert env["CANN_STAND_IN_SOURCED"] == "1"
    assert env["ASCEND_TOOLKIT_HOME"] == f"{odd}/latest"
    assert env["LD_LIBRARY_PATH"] == f"{odd}/latest/lib64:{odd}/latest/lib64/plugin/opskernel"
    assert env["HCCL_CONNECT_TIMEOUT"] == "1200"  # the job's, not set_env.sh's 120
    assert (env["HCCL_EXEC_TIMEOUT"], env["HCCL_SOCKET_IFNAME"]) == ("1800", "eth0")
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "2,3"
    assert env["MFCTL_JOB"] == "j-1" and env["JOB_DIR"] == str(job.resolve())
    assert (job / "run" / "exit_code").read_text().strip() == "0"


def test_set_env_under_nounset(tmp_path: Path) -> None:
    """A shell with nounset on (bash -u) sources set_env.sh scripts that read unset variables,
    and has nounset on again afterwards."""
    (tmp_path / "set_env.sh").write_text(STAND_IN)
    job, _ = launch_script(tmp_path, "ascend:\n  set_env: set_env.sh\nsetup: 'echo \"$-\" > flags'\n")
    r = run(job, "bash", "-u")
    assert r.returncode == 0, r.stderr
    assert workers_env(job)["CANN_STAND_IN_SOURCED"] == "1"
    assert "u" in (job / "flags").read_text()


def test_set_env_paths_relative_to_the_home_in_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Ascend" / "ascend-toolkit").mkdir(parents=True)
    (home / "Ascend" / "ascend-toolkit" / "set_env.sh").write_text(STAND_IN)
    (home / "my env.sh").write_text('export CANN_STAND_IN_SOURCED="${CANN_STAND_IN_SOURCED}2"\ncd /\n')
    job, _ = launch_script(tmp_path, "ascend:\n  set_env:\n  - ~/Ascend/ascend-toolkit/set_env.sh\n"
                           "  - my env.sh\n")
    r = run(job, home=home)
    assert r.returncode == 0, r.stderr
    # Both, in their order; the second one's cd does not move the job out of its dir.
    assert workers_env(job)["CANN_STAND_IN_SOURCED"] == "12"


def test_missing_set_env_stops_the_launch_before_msrun(tmp_path: Path) -> None:
    (tmp_path / "here.sh").write_text(STAND_IN)
    job, _ = launch_script(tmp_path, f"ascend:\n  set_env:\n  - {tmp_path / 'here.sh'}\n"
                           "  - /opt/no cann/set_env.sh\n", host="gpu@node7:2222")
    r = run(job)
    assert r.returncode == 2
    assert r.stderr.strip() == ("mfctl: gpu@node7:2222: ascend.set_env /opt/no cann/set_env.sh is not "
                                "there (or not readable); install CANN there or fix ascend.set_env in "
                                "mfctl.yaml")
    assert not (job / "envdump.json").exists()  # msrun never started
    assert (job / "run" / "exit_code").read_text().strip() == "2"


def test_default_set_env_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset: the first toolkit script that exists, then ATB's when present; none is fine."""
    toolkit, cann, atb = (tmp_path / d / "set_env.sh" for d in ("ascend-toolkit", "cann", "atb"))
    monkeypatch.setattr("mfctl.render.DEFAULT_TOOLKIT_SET_ENV", (str(toolkit), str(cann)))
    monkeypatch.setattr("mfctl.render.DEFAULT_ATB_SET_ENV", str(atb))
    for path, mark in ((toolkit, "T"), (cann, "C"), (atb, "A")):
        path.parent.mkdir()
        path.write_text(f'[[ -n "${{UNSET_IN_CANN}}" ]]\n'
                        f'export CANN_STAND_IN_SOURCED="${{CANN_STAND_IN_SOURCED}}{mark}"\n')

    def sourced() -> str | None:
        job, _ = launch_script(tmp_path, "")
        r = run(job, "bash", "-u")
        assert r.returncode == 0, r.stderr
        found = workers_env(job).get("CANN_STAND_IN_SOURCED")
        subprocess.run(["rm", "-rf", str(job)], check=True)
        return found

    assert sourced() == "TA"
    toolkit.unlink()
    assert sourced() == "CA"
    atb.unlink()
    assert sourced() == "C"
    cann.unlink()
    assert sourced() is None


def test_empty_set_env_sources_nothing(tmp_path: Path) -> None:
    job, script = launch_script(tmp_path, "ascend:\n  set_env: []\n")
    assert "/usr/local/Ascend" not in script and "\n. " not in script
    assert run(job).returncode == 0
