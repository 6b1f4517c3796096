"""A job directory on this machine: ``mfctl.yaml``, its hosts file, and what is rendered from them.

This is the I/O edge of the spec layer: it reads files and hands text to the pure parsers, then
turns spec + hosts + preset into a validated layout and launch plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfctl.cluster.batch import GlobalBatch, plan_batch
from mfctl.cluster.hostfile import HostEntry, localhost_entries, parse_hostfile
from mfctl.cluster.layout import Layout, LayoutError, choose_layout
from mfctl.cluster.plan import LaunchPlan, build_plan
from mfctl.cluster.slurm import node_label
from mfctl.errors import BadInput
from mfctl.jobspec.presets import Preset
from mfctl.jobspec.schema import SPEC_FILE, JobSpec, parse_spec
from mfctl.presets import PRESETS, preset_names
from mfctl.render import (
    check_own_config,
    config_device_target,
    render_launch_script,
    render_model_config,
)

RENDERED_DIR = "rendered"


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: {what} not found; check the path") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: {what} is a directory, expected a file") from None
    except PermissionError:
        raise BadInput(f"{path}: {what} is not readable; check its permissions") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: {what} is not UTF-8 text") from None


def load_hosts(path_or_local: str, base: Path) -> tuple[list[HostEntry], str]:
    """Hosts from a file (relative to ``base``), or this machine for 'localhost'."""
    if path_or_local in ("localhost", "", None):
        return localhost_entries(), "localhost"
    path = Path(path_or_local)
    if not path.is_absolute():
        path = base / path
    return parse_hostfile(read_text(path, "hosts file"), str(path)), str(path)


def get_preset(name: str, where: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise BadInput(f"{where}: unknown model preset {name!r}; choose one of "
                       f"{', '.join(preset_names())}") from None


@dataclass
class Job:
    dir: Path
    spec: JobSpec
    preset: Preset
    entries: list[HostEntry]
    hosts_source: str
    layout: Layout
    layout_note: str | None
    #: Sequences per optimizer step, and how they come about (shown by ``mfctl plan``).
    batch: GlobalBatch
    #: The local dataset that ``launch --sync-dataset`` copies to every node, if any.
    synced_dataset: Path | None = None

    @property
    def spec_path(self) -> Path:
        return self.dir / SPEC_FILE

    @property
    def local(self) -> bool:
        return len(self.entries) == 1 and self.entries[0].is_local

    @property
    def devices_per_node(self) -> int:
        return self.entries[0].slots or self.spec.devices_per_node

    @property
    def world_size(self) -> int:
        return self.devices_per_node * len(self.entries)


def _spec_line(spec_text: str, key: str) -> int:
    for number, line in enumerate(spec_text.splitlines(), start=1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return 1


def resolve_layout(spec: JobSpec, preset: Preset, world: int,
                   where: str, own_text: str | None = None) -> tuple[Layout, str | None, GlobalBatch]:
    """The layout for ``world`` devices, a note when it or the batch differs from the recipe's, and
    the global batch (kept at the recipe's where the layout allows).

    Where the user left dp, mp or pp open, the nearest layout that fits in device memory is chosen
    (``mfctl.jobs.fit``); ``own_text`` is the job's own MindFormers YAML, if it has one."""
    reference = Layout(preset.data_parallel, preset.model_parallel, preset.pipeline_stage,
                       preset.micro_batch_num)
    p = spec.parallel

    def batch_for(layout: Layout) -> tuple[Layout, GlobalBatch]:
        new_layout, batch, _ = _plan_batch(spec, preset, layout, reference)
        return new_layout, batch

    fits = None
    if preset.device_target != "CPU" and None in (p.data_parallel, p.model_parallel, p.pipeline_stage):
        from mfctl.jobs.fit import layout_predicate

        fits = layout_predicate(spec, preset, world, own_text, batch_for)
    try:
        layout, note = choose_layout(world, preset.model, reference, p.data_parallel, p.model_parallel,
                                     p.pipeline_stage, p.micro_batch_num, fits=fits)
    except LayoutError as exc:
        raise BadInput(f"{where}: parallel layout cannot run: {exc}") from None
    if preset.device_target == "CPU" and (layout.model_parallel > 1 or layout.pipeline_stage > 1):
        # Measured: semi-auto parallel fails to compile on CPU ("Invalid backend: CPU").
        raise BadInput(f"{where}: {preset.name} trains on CPU, where MindSpore runs data parallelism "
                       f"only (mp {layout.model_parallel}, pp {layout.pipeline_stage} asked); use "
                       f"--dp {world} --mp 1 --pp 1")
    layout, batch, batch_note = _plan_batch(spec, preset, layout, reference)
    cut = [key for key, value in preset.recompute_config.items()
           if isinstance(value, list) and len(value) > layout.pipeline_stage]
    if cut:
        # MindFormers refuses a per-stage list longer than pipeline_stage; the renderer cuts it.
        batch_note = "; ".join(filter(None, [batch_note, (
            f"{' and '.join(cut)} keep the first {layout.pipeline_stage} of the recipe's per-stage "
            f"entries")]))
    if batch_note:
        note = f"{note}; {batch_note}" if note else batch_note
    return layout, note, batch


def _plan_batch(spec: JobSpec, preset: Preset, layout: Layout,
                reference: Layout) -> tuple[Layout, GlobalBatch, str | None]:
    t = spec.train
    return plan_batch(
        layout, reference,
        batch_size=t.batch_size or preset.train.batch_size,
        grad_accum=t.gradient_accumulation_steps or preset.train.gradient_accumulation_steps,
        interleave=preset.micro_batch_interleave_num, semi_auto=preset.semi_auto_parallel,
        seq_length=t.seq_length or preset.model.seq_length,
        grad_accum_fixed=t.gradient_accumulation_steps is not None,
        micro_batch_num_fixed=spec.parallel.micro_batch_num is not None)


def load_job(directory: Path, nodes: str | None = None) -> Job:
    """Load and validate the job in ``directory``; ``nodes`` overrides the spec's hosts file."""
    spec_path = directory / SPEC_FILE
    if not spec_path.exists():
        raise BadInput(f"{spec_path}: no job here; create one with 'mfctl init DIR' or pass --dir")
    text = read_text(spec_path, "job spec")
    spec = parse_spec(text, str(spec_path))
    preset = get_preset(spec.model, f"{spec_path}:{_spec_line(text, 'model')}")
    if spec.launcher == "mindformers" and not spec.mindformers_home:
        raise BadInput(f"{spec_path}:{_spec_line(text, 'launcher')}: launcher mindformers needs "
                       "mindformers_home, the MindFormers source dir on the nodes; set it or use "
                       "launcher msrun")
    own_text = None
    if spec.model_config_file:
        # Checked here, not only when rendering, so plan, check and launch refuse a broken config
        # before any node is contacted.
        own_text = read_text(directory / spec.model_config_file, "model_config")
        check_own_config(own_text, spec.model_config_file)
    if spec.slurm is not None:
        # Slurm chooses the nodes at run time: the plan names them by node rank.
        if nodes is not None:
            raise BadInput(f"--nodes {nodes}: {spec_path} runs on Slurm (scheduler slurm), which "
                           "chooses the nodes; set slurm.node_count instead")
        entries = [HostEntry(node_label(i)) for i in range(spec.slurm.node_count)]
        source = f"slurm partition {spec.slurm.partition}"
    elif nodes is not None:
        entries, source = load_hosts(nodes, Path.cwd())
    else:
        entries, source = load_hosts(spec.hosts, directory)
    slots = entries[0].slots
    if slots is not None and "devices_per_node" in text and slots != spec.devices_per_node:
        raise BadInput(
            f"{source}:{entries[0].line}: slots={slots} but {spec_path}:"
            f"{_spec_line(text, 'devices_per_node')} says devices_per_node {spec.devices_per_node}; "
            "make them agree")
    if slots is not None and spec.devices is not None and slots != len(spec.devices):
        raise BadInput(
            f"{source}:{entries[0].line}: slots={slots} but {spec_path}:{_spec_line(text, 'devices')} "
            f"lists {len(spec.devices)} device(s); make them agree")
    world = (slots or spec.devices_per_node) * len(entries)
    layout, note, batch = resolve_layout(spec, preset, world, f"{spec_path}:{_spec_line(text, 'parallel')}",
                                         own_text)
    return Job(directory.resolve(), spec, preset, entries, source, layout, note, batch)


def make_plan(job: Job, master_addr: str | None = None,
              resolve: Callable[[HostEntry], str] = lambda e: e.host, resume: str | None = None) -> LaunchPlan:
    return build_plan(job.spec, job.entries, job.layout, str(job.dir), master_addr=master_addr,
                      resolve=resolve, resume=resume, layout_note=job.layout_note, batch=job.batch)


def render_job(job: Job, plan: LaunchPlan, job_id: str, out_dir: Path | None = None,
               resume: bool = False) -> list[Path]:
    """Write the MindFormers YAML, one launch script per node and the plan; return their paths."""
    own = None
    if job.spec.model_config_file:
        own = read_text(job.dir / job.spec.model_config_file, "model_config")
    config = render_model_config(job.spec, job.preset, job.layout, plan.world_size, own, resume=resume,
                                 batch=job.batch)
    target = config_device_target(config)
    scripts = [render_launch_script(job.spec, plan, node, job_id, target) for node in plan.nodes]
    out = out_dir or job.dir / RENDERED_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "config.yaml"]
    written[0].write_text(config, encoding="utf-8")
    for node, script in zip(plan.nodes, scripts):
        path = out / f"launch-node{node.node_rank}.sh"
        path.write_text(script, encoding="utf-8")
        path.chmod(0o700)  # it exports the spec's env values, which may be secrets
        written.append(path)
    plan_path = out / "plan.json"
    plan_path.write_text(json.dumps(plan.to_json(), indent=2) + "\n", encoding="utf-8")
    written.append(plan_path)
    return written
