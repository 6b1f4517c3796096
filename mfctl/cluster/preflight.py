"""The preflight's judgement: one table of rows, read by the same code for SSH nodes and Slurm tasks.

Every node runs ``mfctl/node/preflight.sh`` (over SSH in the one round trip per node; on Slurm
inside each task), which prints facts: ``key value`` lines, and the raw output of the Ascend tools
as ``@name line`` lines. ``facts.read_facts`` turns that text into ``NodeFacts``; ``judge`` runs every
row of ``NODE_ROWS`` on each node and every row of ``CLUSTER_ROWS`` across the nodes.

A row is (fact, problem, when it applies, what to do): ``fact`` names what it reads, ``find`` says
what is wrong (one string per thing wrong: an NPU, a device), ``when`` says for which jobs it
applies, ``do`` says what to do (``{...}`` filled from the ``Context``), and ``level`` is ``fail``
(the job cannot start) or ``warn``. Adding a check is adding a row (and its test).

Standard library only: a Slurm job ships this module, ``facts.py`` and ``npu.py`` to its nodes (see
``mfctl/node/preflight_judge.py``), so the batch script judges its tasks' facts with this code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from mfctl.cluster import npu
from mfctl.cluster.facts import DeviceNet, NodeFacts, read_facts

__all__ = ["CLUSTER_ROWS", "NODE_ROWS", "Context", "NodeFacts", "Verdict", "judge", "read_facts"]

#: 1 GiB free for the bundle, logs and a tiny model's checkpoints.
MIN_FREE_KB = 1024 * 1024
FAIL, WARN = "fail", "warn"


@dataclass(frozen=True)
class Context:
    """What the judge knows of the job (JSON-able: a Slurm job carries it to its nodes)."""

    python: str = "python3"
    dataset: str = ""
    setup: str = ""
    master_port: int = 8118
    job_name: str = ""
    launcher: str = "msrun"
    mindformers_home: str = ""
    check_dataset: bool = True
    #: The rendered config targets Ascend: the NPU rows apply.
    ascend: bool = False
    #: The device ids the job's workers use on every node.
    devices: tuple[int, ...] = ()
    #: The configured CANN environment scripts (``ascend.set_env``; None: unset, the defaults).
    set_env: tuple[str, ...] | None = None
    #: Training (not inference): a 310 chip cannot train.
    training: bool = True
    min_free_kb: int = MIN_FREE_KB

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Context:
        data = json.loads(text)
        data["devices"] = tuple(data.get("devices", ()))
        data["set_env"] = None if data.get("set_env") is None else tuple(data["set_env"])
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# --------------------------------------------------------------------------- rows

Find = Callable[[NodeFacts, Context], Iterable[str]]


@dataclass(frozen=True)
class Row:
    fact: str
    find: Find
    do: str
    when: Callable[[Context], bool] = lambda c: True
    level: str = FAIL

    def run(self, f: NodeFacts, c: Context) -> list[str]:
        if not self.when(c):
            return []
        do = self.do.format(**asdict(c))
        return [f"{what}; {do}" if do else what for what in self.find(f, c)]


def _ascend(c: Context) -> bool:
    return c.ascend


def _if(cond: bool, what: str) -> list[str]:
    return [what] if cond else []


def _python_ok(f: NodeFacts) -> bool:
    return f.get("python") not in (None, "MISSING") and not f.get("python_broken")


def _used_chips(f: NodeFacts, c: Context) -> list[npu.Chip]:
    info = f.npu_smi
    return [ch for d in c.devices if info and (ch := info.chip(d)) is not None]


def _missing_devices(f: NodeFacts, c: Context) -> list[str]:
    info = f.npu_smi
    if info is None or info.unreadable == "(no output)":
        return []
    found = [ch.id for ch in info.chips if not ch.inference_only]
    missing = [d for d in c.devices if info.chip(d) is None]
    if not missing and len(found) >= len(c.devices):
        return []
    have = ", ".join(str(i) for i in found) or "none"
    return [f"NPU {', '.join(str(d) for d in missing)} not found: npu-smi shows {len(found)} training "
            f"chip(s) (device {have}), the job uses {len(c.devices)} per node "
            f"(devices {', '.join(str(d) for d in c.devices)})"]


def _unhealthy(f: NodeFacts, c: Context) -> list[str]:
    out = []
    for ch in _used_chips(f, c):
        if ch.health.upper() == "OK":
            continue
        h = f.health(ch.npu)
        detail = ""
        if h is not None and (h.code or "NA") + (h.info or "NA") != "NANA":
            detail = f" (error code {h.code or 'NA'}: {h.info or 'NA'})"
        out.append(f"NPU {ch.id} ({ch.name}) health is {ch.health}{detail}")
    return out


def _foreign(f: NodeFacts, c: Context) -> list[str]:
    ours = set((f.get("job_pids") or "").split())
    out = []
    for ch in _used_chips(f, c):
        for p in ch.processes:
            if str(p.pid) not in ours:
                out.append(f"NPU {ch.id} is held by process {p.pid} ({p.name}, {p.memory_mb} MB)")
    return out


def _inference(f: NodeFacts, c: Context) -> list[str]:
    chips = _used_chips(f, c)
    names = sorted({ch.name for ch in chips if ch.inference_only})
    return _if(bool(names), f"NPU {', '.join(str(ch.id) for ch in chips if ch.inference_only)} is "
               f"{'/'.join(names)}, an inference chip that cannot train")


def _npu_unreadable(f: NodeFacts, c: Context) -> list[str]:
    info = f.npu_smi
    if info is None or info.unreadable is None:
        return []
    return [f"npu-smi info printed what mfctl cannot read: {info.unreadable[:160]!r}"]


def _per_device(check: Callable[[int, DeviceNet, NodeFacts], str | None]) -> Find:
    """A row over hccn_tool's answers: ``check`` sees each used device's NIC (when it was asked)."""
    def find(f: NodeFacts, c: Context) -> list[str]:
        if f.get("hccn_tool") in (None, "MISSING"):
            return []
        return [what for d in c.devices if f.hccn_asked(d) and (what := check(d, f.net(d), f))]
    return find


def _link_down(d: int, net: DeviceNet, f: NodeFacts) -> str | None:
    if net.link is None or net.link.upper() == "UP":
        return None
    return f"NPU {d}: device NIC link is {net.link} (hccn_tool -i {d} -link -g)"


def _net_fault(d: int, net: DeviceNet, f: NodeFacts) -> str | None:
    if (net.net_health or "").lower() not in ("fault", "socket failed"):
        return None
    return f"NPU {d}: device network health is {net.net_health} (hccn_tool -i {d} -net_health -g)"


def _net_init(d: int, net: DeviceNet, f: NodeFacts) -> str | None:
    if (net.net_health or "").lower() != "init":
        return None
    return (f"NPU {d}: device network health is Init: no detection address is set, so the link is not "
            f"checked; set one with 'hccn_tool -i {d} -netdetect -s address <IP>'")


def _no_ip(d: int, net: DeviceNet, f: NodeFacts) -> str | None:
    if net.ip is not None or f"ip.{d}" not in f.raw:
        return None
    said = next((x.strip() for x in f.raw[f"ip.{d}"] if x.strip()), "nothing")
    return f"NPU {d}: the device NIC has no IP address (hccn_tool -i {d} -ip -g said {said[:120]!r})"


def _hccn_unreadable(d: int, net: DeviceNet, f: NodeFacts) -> str | None:
    for name, value in (("link", net.link), ("net_health", net.net_health)):
        lines = [x for x in f.raw.get(f"{name}.{d}", []) if x.strip()]
        if value is None and lines:
            return f"hccn_tool -i {d} -{name} -g printed what mfctl cannot read: {lines[0][:160]!r}"
    return None


def _stale(f: NodeFacts, c: Context) -> list[str]:
    n = f.get("stale", "0")
    return _if(n not in ("0", "", None), f"{n} process(es) of an earlier {c.job_name} job still run")


def _disk(f: NodeFacts, c: Context) -> list[str]:
    free = f.get("disk_free_kb", "") or ""
    return _if(free.isdigit() and int(free) < c.min_free_kb,
               f"only {int(free or 0) // 1024} MiB free in the work dir")


def _checkout(f: NodeFacts, c: Context) -> list[str]:
    """What is wrong with the node's MindFormers checkout (launcher 'mindformers')."""
    home = c.mindformers_home
    if f.get("mf_home") == "missing":
        version = f.get("mindformers", "") or ""
        tag = f" at tag v{version}" if version not in ("", "MISSING") else ""
        return [f"mindformers_home {home} is not a directory; clone MindFormers' sources there"
                f"{tag} or fix mindformers_home"]
    missing = f.get("mf_home_missing")
    if missing:
        return [f"mindformers_home {home} has no {' and no '.join(missing.split())}; it must be a "
                "MindFormers source checkout"]
    checkout, installed = f.get("mf_home_version", "unknown"), f.get("mindformers")
    if installed in (None, "MISSING") or f.get("mf_home_version") is None:
        return []  # reported by the python rows
    if checkout != installed:
        return [f"mindformers_home {home} is MindFormers {checkout} but {c.python} has "
                f"mindformers {installed}; check out v{installed} there or install "
                f"mindformers=={checkout}"]
    return []


#: One row per check of one node. Order: the first failing row is the one a refusal names.
NODE_ROWS: tuple[Row, ...] = (
    Row("setup_failed", lambda f, c: _if(bool(f.get("setup_failed")), f"the setup line failed: {c.setup!r}"),
        "fix 'setup' in mfctl.yaml"),
    Row("set_env_missing", lambda f, c: _if(bool(f.get("set_env_missing")), f"ascend.set_env "
                                            f"{f.get('set_env_missing')} is not there (or not readable)"),
        "install CANN there or fix ascend.set_env in mfctl.yaml"),
    Row("python", lambda f, c: _if(not _python_ok(f), f"python {c.python!r} not found"),
        "install it or set --python / 'python'"),
    Row("mindspore", lambda f, c: _if(_python_ok(f) and f.get("mindspore") == "MISSING",
                                      f"mindspore is not installed for {c.python}"), "pip install mindspore"),
    Row("mindformers", lambda f, c: _if(_python_ok(f) and f.get("mindformers") == "MISSING",
                                        f"mindformers is not installed for {c.python}"), "pip install mindformers"),
    Row("msrun", lambda f, c: _if(_python_ok(f) and f.get("msrun") == "MISSING",
                                  "msrun not found next to python or on PATH"), "it ships with mindspore"),
    Row("mf_home", _checkout, "", when=lambda c: c.launcher == "mindformers"),
    Row("dataset", lambda f, c: _if(f.get("dataset") == "missing", f"dataset {c.dataset} not found"),
        "copy it there or use --sync-dataset", when=lambda c: c.check_dataset),
    Row("dataset", lambda f, c: _if(f.get("dataset") == "unreadable", f"dataset {c.dataset} is not readable "
                                    "by the node's user"), "chmod it or use --sync-dataset",
        when=lambda c: c.check_dataset),
    Row("disk_free_kb", _disk, "free some space"),
    Row("port", lambda f, c: _if(f.get("port") == "busy", f"master port {c.master_port} is in use on the master"),
        "stop what uses it or set --master-port"),
    Row("stale", _stale, "'mfctl stop' it first"),
    # Ascend (the rendered config's device_target is Ascend)
    Row("npu_smi", lambda f, c: _if(f.get("npu_smi") == "MISSING", "npu-smi not found (PATH, /usr/local/sbin, "
                                    "/usr/local/bin)"),
        "install the Ascend driver, or put npu-smi on PATH in 'setup'", when=_ascend),
    Row("npu_info", _missing_devices, "lower --devices-per-node or list the devices the node has", when=_ascend),
    Row("npu_info", _unhealthy, "see 'npu-smi info -t health -i N -c 0', reset or replace the chip, "
        "or pick other devices", when=_ascend),
    Row("npu_info", _foreign, "stop it, or pick other devices", when=_ascend),
    Row("npu_info", _inference, "train on 910-series nodes", when=lambda c: c.ascend and c.training),
    Row("link", _per_device(_link_down), "check the cable and the switch port, or pick other devices",
        when=_ascend),
    Row("net_health", _per_device(_net_fault), "check the device network (hccn_tool -i N -netdetect -g, "
        "the detection address, the switch)", when=_ascend),
    Row("ip", _per_device(_no_ip), "configure it (/etc/hccn.conf, hccn_tool -i N -ip -s)", when=_ascend),
    # Warnings: the job may start.
    Row("npu_info", _npu_unreadable, "the NPU checks may be incomplete", when=_ascend, level=WARN),
    Row("hccn_tool", lambda f, c: _if(f.get("npu_smi") not in (None, "MISSING") and f.get("hccn_tool") == "MISSING",
                                      "npu-smi is here but hccn_tool is not (PATH, /usr/local/Ascend/driver/tools)"),
        "the device network is not checked", when=_ascend, level=WARN),
    Row("net_health", _per_device(_net_init), "", when=_ascend, level=WARN),
    Row("link", _per_device(_hccn_unreadable), "the device network checks may be incomplete", when=_ascend,
        level=WARN),
)


@dataclass(frozen=True)
class ClusterRow:
    """A check across the nodes: ``values`` reads one value per node (None: unknown there);
    more than one distinct value fails every node."""

    fact: str
    values: Callable[[NodeFacts], str | None]
    what: str
    do: str
    when: Callable[[Context], bool] = lambda c: True

    def run(self, nodes: Sequence[NodeFacts], c: Context) -> str | None:
        if not self.when(c):
            return None
        seen: dict[str, list[str]] = {}
        for f in nodes:
            v = self.values(f)
            if v is not None:
                seen.setdefault(v, []).append(f.host)
        if len(seen) < 2:
            return None
        detail = ", ".join(f"{v} on {', '.join(hosts)}" for v, hosts in sorted(seen.items()))
        return f"{self.what} differ across nodes: {detail}; {self.do}"


def _frameworks(f: NodeFacts) -> str | None:
    ms = f.get("mindspore")
    return None if ms in (None, "MISSING") else f"{ms}/{f.get('mindformers')}"


def _chip_models(f: NodeFacts, c: Context | None = None) -> str | None:
    info = f.npu_smi
    names = sorted({ch.name for ch in info.chips}) if info else []
    return "+".join(names) or None


CLUSTER_ROWS: tuple[ClusterRow, ...] = (
    ClusterRow("mindspore", _frameworks, "mindspore/mindformers versions", "install the same on every node"),
    ClusterRow("npu_info", _chip_models, "NPU chip models", "use nodes of one chip model", when=_ascend),
    ClusterRow("npu_info", lambda f: f.versions().get("npu_smi"), "driver versions (npu-smi)",
               "install the same Ascend driver on every node", when=_ascend),
    ClusterRow("driver.info", lambda f: f.versions().get("driver"), "driver versions (version.info)",
               "install the same Ascend driver on every node", when=_ascend),
    ClusterRow("firmware.info", lambda f: f.versions().get("firmware"), "firmware versions",
               "install the same firmware on every node", when=_ascend),
    ClusterRow("cann.info", lambda f: f.versions().get("cann"), "CANN toolkit versions",
               "install the same CANN toolkit on every node", when=_ascend),
)


@dataclass(frozen=True)
class Verdict:
    """One node's judgement: ``problems`` fail it, ``warnings`` do not."""

    host: str
    node_rank: int
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def judge_node(f: NodeFacts, c: Context) -> tuple[list[str], list[str]]:
    if "unreachable" in f.values:  # no facts: nothing else to judge
        return [f.values["unreachable"]], []
    if "error" in f.values:
        return [f"preflight failed: {f.values['error']}"], []
    problems: list[str] = []
    warnings: list[str] = []
    for row in NODE_ROWS:
        try:
            found = row.run(f, c)
        except Exception as exc:  # a row must never hide the others (nor raise on odd output)
            found = []
            warnings.append(f"the {row.fact} check could not read this node's facts ({type(exc).__name__}: {exc})")
        (problems if row.level == FAIL else warnings).extend(found)
    return problems, warnings


def judge(nodes: Sequence[NodeFacts], c: Context) -> list[Verdict]:
    """Every row of the table on every node, then the rows across nodes."""
    per_node = [judge_node(f, c) for f in nodes]
    across = [p for row in CLUSTER_ROWS if (p := row.run(nodes, c)) is not None]
    return [Verdict(f.host, f.node_rank, tuple(problems + across), tuple(warnings))
            for f, (problems, warnings) in zip(nodes, per_node)]
