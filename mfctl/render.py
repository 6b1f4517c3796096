"""Rendering: the job's MindFormers YAML and each node's launch script, from ``templates/``.

Jinja2 with ``StrictUndefined``: a template that names a value the renderer does not pass is an
error, never an empty string in a config. The context for a model template is built by
``model_context`` from the spec, the preset and the chosen layout.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mfctl.cluster.batch import GlobalBatch
from mfctl.cluster.layout import Layout
from mfctl.cluster.plan import CONFIG_FILE, CPU_SITE_DIR, RUN_DIR, LaunchPlan, NodePlan
from mfctl.errors import BadInput
from mfctl.jobspec.ascend import DEFAULT_ATB_SET_ENV, DEFAULT_TOOLKIT_SET_ENV
from mfctl.jobspec.presets import ModelShape, Preset
from mfctl.jobspec.schema import JobSpec, yaml_error_mark
from mfctl.node import cpu_compat

if TYPE_CHECKING:
    import jinja2

#: The markers every process of a job carries in its environment (how stop and status find them).
JOB_ENV_MARKER = "MFCTL_JOB"


def templates_dir() -> Path:
    """``templates/`` of the source tree, or the copy packaged into the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates", here / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("mfctl's templates/ folder is missing from this installation")


def _env() -> jinja2.Environment:
    import jinja2  # here: commands that render nothing (check, status, watch...) start ~13 ms sooner

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    # A value shown in a shell comment must stay on the comment's line: a newline in it (a
    # workdir, say) would turn the rest of the value into a command.
    env.filters["comment"] = lambda v: " ".join(str(v).splitlines())
    env.filters["yaml"] = yaml_value
    return env


def yaml_value(value: Any) -> str:
    """One value as inline YAML that reads back the same: a float like 1e-08 must be written
    1.0e-08 (YAML 1.1 reads '1e-08' as a string), a string that looks like a number stays quoted."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()
    return text[1:-1]


def model_shape(spec: JobSpec, preset: Preset) -> ModelShape:
    base = preset.model
    return ModelShape(
        seq_length=spec.train.seq_length or base.seq_length,
        hidden_size=base.hidden_size,
        num_layers=base.num_layers,
        num_heads=base.num_heads,
        n_kv_heads=base.n_kv_heads,
        vocab_size=spec.train.vocab_size or base.vocab_size,
    )


def model_context(spec: JobSpec, preset: Preset, layout: Layout, world_size: int,
                  resume: bool = False, batch: GlobalBatch | None = None) -> dict[str, Any]:
    """What a model template reads: the job's values over the preset's recipe.

    ``batch`` is the job's planned global batch (its accumulation may have been scaled to keep the
    recipe's global batch on this layout); without it the spec's or preset's value is used.
    """
    train = spec.train
    load_checkpoint = train.load_checkpoint
    resume_training = train.resume_training
    if resume:
        load_checkpoint = f"./{spec.output_dir}/checkpoint"
        resume_training = True
    return {
        "name": spec.name,
        "device_target": preset.device_target,
        "data_parallel": layout.data_parallel,
        "model_parallel": layout.model_parallel,
        "pipeline_stage": layout.pipeline_stage,
        "micro_batch_num": layout.micro_batch_num,
        "use_parallel": world_size > 1,
        "dataset_dir": spec.dataset,
        "output_dir": f"./{spec.output_dir}",
        "load_checkpoint": load_checkpoint,
        "resume_training": resume_training,
        "epochs": train.epochs or preset.epochs,
        "batch_size": train.batch_size or preset.batch_size,
        "seed": train.seed,
        "save_checkpoint_steps": train.save_checkpoint_steps or preset.save_checkpoint_steps,
        "model": model_shape(spec, preset).as_dict(),
        "gradient_accumulation_steps": (
            batch.gradient_accumulation_steps if batch is not None
            else train.gradient_accumulation_steps or preset.train.gradient_accumulation_steps),
        # The published train_dataset.batch_size (which MindFormers overwrites) unless the job
        # chose its own batch size: then both say the same.
        "dataset_batch_size": (train.batch_size or preset.train.dataset_batch_size
                               or preset.train.batch_size),
        "recompute_config": _recompute_for_stages(preset.recompute_config, layout.pipeline_stage),
        "preset": preset,
    }


def _recompute_for_stages(config: dict[str, Any], stages: int) -> dict[str, Any]:
    """Per-stage recompute lists cut to the job's stage count: MindFormers refuses a list longer
    than pipeline_stage (check_rules._rule_recompute)."""
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, list) and len(value) > stages and all(isinstance(v, int) for v in value):
            out[key] = value[:stages]
    return out


def render_template(name: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return _env().get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise BadInput(f"templates/{exc.name}: template not found; reinstall mfctl") from None
    except jinja2.UndefinedError as exc:
        raise BadInput(f"templates/{name}: {exc.message}; the template uses a value mfctl does not pass") from None
    except jinja2.TemplateSyntaxError as exc:
        raise BadInput(f"templates/{exc.name or name}:{exc.lineno}: {exc.message}") from None


def render_model_config(spec: JobSpec, preset: Preset, layout: Layout, world_size: int,
                        own_config: str | None = None, resume: bool = False,
                        batch: GlobalBatch | None = None) -> str:
    """The MindFormers YAML for the job: the preset's template, or the user's YAML with mfctl's keys set."""
    context = model_context(spec, preset, layout, world_size, resume, batch)
    if own_config is None:
        return render_template(preset.template, context)
    return _apply_to_own_config(own_config, context, spec.model_config_file or "model_config")


def check_own_config(text: str, filename: str) -> dict[str, Any]:
    """The user's MindFormers YAML as a mapping, or ``BadInput`` naming ``file:line``.

    Called when a job is loaded (plan, check, launch) so a broken config is refused before any
    node is contacted, not after the preflight.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = yaml_error_mark(exc)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise BadInput(f"{where}: not valid YAML; fix the syntax of your MindFormers config") from None
    if not isinstance(data, dict) or "model" not in data:
        raise BadInput(f"{filename}:1: not a MindFormers config (no 'model' section); give a "
                       "MindFormers YAML with model, or use a preset (--model)")
    # mfctl writes keys into these sections: each must be a mapping where the config has it.
    for path in (("parallel_config",), ("train_dataset",), ("train_dataset", "data_loader")):
        parent = data if len(path) == 1 else data.get(path[0])
        value = parent.get(path[-1]) if isinstance(parent, dict) else None
        if value is not None and not isinstance(value, dict):
            raise BadInput(f"{filename}:{_yaml_line(text, path[-1])}: {'.'.join(path)} must be a "
                           f"mapping, got {value!r}; fix it or remove it (mfctl fills it in)")
    return data


def _yaml_line(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return 1


def _apply_to_own_config(text: str, ctx: dict[str, Any], filename: str) -> str:
    data = check_own_config(text, filename)
    data["output_dir"] = ctx["output_dir"]
    data["run_mode"] = "train"
    data["use_parallel"] = ctx["use_parallel"]
    data["load_checkpoint"] = ctx["load_checkpoint"]
    data["resume_training"] = ctx["resume_training"]
    pc = data.setdefault("parallel_config", {})
    for key in ("data_parallel", "model_parallel", "pipeline_stage", "micro_batch_num"):
        pc[key] = ctx[key]
    for section in ("train_dataset",):
        loader = data.setdefault(section, {}).setdefault("data_loader", {})
        loader["dataset_dir"] = ctx["dataset_dir"]
    if cpu_compat.targets_cpu(data):
        # Made CPU-ready here, so the YAML every node receives is the one that trains, whichever
        # launcher reads it (MindFormers' own run_mindformer.py included).
        problem = cpu_compat.cpu_parallel_problem(data)
        if problem:
            raise BadInput(f"{filename}:{_yaml_line(text, 'device_target')}: context.device_target is "
                           f"CPU, but the job's layout has {problem}")
        cpu_compat.fix_config(data)
    return yaml.safe_dump(data, sort_keys=False)


def config_device_target(config_text: str) -> str | None:
    """``context.device_target`` of a rendered MindFormers YAML, if it names one."""
    try:
        data = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return None
    context = data.get("context") if isinstance(data, dict) else None
    target = context.get("device_target") if isinstance(context, dict) else None
    return target if isinstance(target, str) else None


def render_launch_script(spec: JobSpec, plan: LaunchPlan, node: NodePlan, job_id: str,
                         device_target: str | None = None) -> str:
    """One node's launch script. ``device_target`` is the rendered config's: with launcher
    'mindformers' on CPU the script puts mfctl's CPU sitecustomize on PYTHONPATH, nowhere else."""
    python_dir = spec.python.rsplit("/", 1)[0] if "/" in spec.python else None
    mindformers = spec.launcher == "mindformers"
    cpu = isinstance(device_target, str) and device_target.strip().upper() == "CPU"
    return render_template("node-launch.sh.j2", {
        "job_id": job_id,
        "job_name": spec.name,
        "host": node.host,
        "node_rank": node.node_rank,
        "job_dir": node.job_dir,
        "cwd": node.cwd,
        "python_dir": python_dir,
        "setup": spec.setup or "",
        "env": sorted(spec.env.items()),
        "marker": JOB_ENV_MARKER,
        "run_dir": RUN_DIR,
        "config_file": CONFIG_FILE,
        "command": node.command,
        "log_dir": node.log_dir,
        "output_dir": spec.output_dir,
        "mindformers_home": spec.mindformers_home if mindformers else None,
        "cpu_site": CPU_SITE_DIR if mindformers and cpu else None,
        "set_env": None if spec.ascend.set_env is None else [node_path_word(p) for p in spec.ascend.set_env],
        "default_set_env": [shlex.quote(p) for p in DEFAULT_TOOLKIT_SET_ENV],
        "atb_set_env": shlex.quote(DEFAULT_ATB_SET_ENV),
        "visible_devices": ",".join(map(str, node.devices)) if node.devices is not None else None,
    })


def node_path_word(path: str) -> str:
    """A path on the node as one shell word: absolute as given, relative (or ``~/``) under the
    node user's home, as mfctl takes workdir and mindformers_home."""
    if path.startswith("/"):
        return shlex.quote(path)
    return '"$HOME"/' + shlex.quote(path.removeprefix("~/"))
