"""The job spec: ``mfctl.yaml`` in a job directory.

Parsed from text (no I/O here) so errors can name ``file:line``: the YAML is composed into nodes
first, which keep their line marks, and a pydantic validation error's location is mapped back to
the line of the offending key.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mfctl.errors import BadInput
from mfctl.jobspec.ascend import AscendSpec, hccl_problem, parse_devices

SPEC_FILE = "mfctl.yaml"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ParallelSpec(BaseModel):
    """The parallel layout. Unset values are chosen from the preset and the device count."""

    model_config = ConfigDict(extra="forbid")

    data_parallel: int | None = Field(None, ge=1, description="Data-parallel degree (dp).")
    model_parallel: int | None = Field(None, ge=1, description="Tensor/model-parallel degree (mp).")
    pipeline_stage: int | None = Field(None, ge=1, description="Pipeline stages (pp).")
    micro_batch_num: int | None = Field(None, ge=1, description="Micro batches per step (pipeline).")


class TrainSpec(BaseModel):
    """Training knobs rendered into the MindFormers config; unset means the preset's value."""

    model_config = ConfigDict(extra="forbid")

    epochs: int | None = Field(None, ge=1, description="runner_config.epochs.")
    batch_size: int | None = Field(None, ge=1,
                                   description="Per-device batch size (runner_config.batch_size).")
    gradient_accumulation_steps: int | None = Field(
        None, ge=1, description="Gradient accumulation steps (without pipeline stages); unset: the "
        "preset's, scaled to keep its global batch on another device count.")
    seq_length: int | None = Field(None, ge=8, description="Sequence length (must match the dataset).")
    vocab_size: int | None = Field(None, ge=2, description="Vocabulary size (>= the tokenizer's).")
    save_checkpoint_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps.")
    seed: int = Field(0, description="Random seed.")
    load_checkpoint: str = Field("", description="Checkpoint to start from (path on the nodes).")
    resume_training: bool = Field(False, description="Resume optimizer state and step from it.")


class SlurmSpec(BaseModel):
    """Where a Slurm job runs: the batch job's options (``scheduler: slurm``)."""

    model_config = ConfigDict(extra="forbid")

    partition: str = Field(description="Slurm partition (sbatch --partition).")
    node_count: int = Field(ge=1, description="Nodes to allocate (sbatch --nodes); one msrun per node.")
    gres: str | None = Field(None, description="Generic resources per node, e.g. 'npu:8' (sbatch --gres).")
    time: str | None = Field(None, description="Time limit, e.g. '2-00:00:00' (sbatch --time).")
    account: str | None = Field(None, description="Account to charge (sbatch --account).")
    qos: str | None = Field(None, description="Quality of service (sbatch --qos).")
    sbatch_args: list[str] = Field(default_factory=list,
                                   description="More sbatch options, passed through as given.")
    login: str | None = Field(
        None, description="Run sbatch/squeue/scontrol/scancel over SSH on this login node "
        "([user@]host[:port]); unset: on this machine.")
    shared_root: str | None = Field(
        None, description="A directory every node sees at the same path (the shared filesystem); "
        "the job dir must be under it unless it is on a network filesystem (NFS, Lustre, ...).")

    @field_validator("partition", "gres", "time", "account", "qos", "login")
    @classmethod
    def _word(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() for c in v)):
            raise ValueError(f"must be one word without spaces, got {v!r}")
        return v

    @field_validator("sbatch_args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        for arg in v:
            if not arg.startswith("-"):
                raise ValueError(f"sbatch argument {arg!r} must be an option like '--exclusive' "
                                 "or '--constraint=x'")
            if arg.split("=", 1)[0] in ("--nodes", "-N", "--ntasks-per-node", "--partition", "-p",
                                        "--requeue", "--output", "-o", "--error", "-e"):
                raise ValueError(f"sbatch argument {arg!r}: mfctl sets this itself; use the "
                                 "slurm keys (partition, node_count) instead")
        return v


class SpecKeyError(ValueError):
    """A check of the whole spec that is about one key: ``parse_spec`` names that key's line."""

    def __init__(self, key: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


class JobSpec(BaseModel):
    """Everything mfctl needs to render and launch one pretraining job."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Job name: letters, digits, '.', '_' or '-' (names the node job dir).")
    model: str = Field(description="A preset name (llama2-7b, llama3-70b, tiny-llama).")
    model_config_file: str | None = Field(
        None, alias="model_config",
        description="Your own MindFormers YAML (relative to the job dir) used instead of the preset's "
        "template; mfctl sets parallel, dataset and output keys in it.",
    )
    hosts: str = Field("localhost", description="Hosts file (relative to the job dir), or 'localhost'.")
    scheduler: Literal["hosts", "slurm"] = Field(
        "hosts", description="Who starts the nodes: 'hosts' (mfctl over SSH, the hosts file) or "
        "'slurm' (sbatch; the 'slurm' section says where).")
    slurm: SlurmSpec | None = Field(None, description="Slurm batch options (scheduler slurm).")
    devices_per_node: int = Field(8, ge=1, description="Devices (msrun local workers) per node.")
    devices: list[int] | None = Field(
        None, description="The devices each node's job uses, e.g. [0, 1, 2, 3] (or '0,1,2,3'): "
        "exported as ASCEND_RT_VISIBLE_DEVICES, and their count is the workers per node. "
        "Unset: devices 0..devices_per_node-1, ASCEND_RT_VISIBLE_DEVICES left as the node has it.")
    ascend: AscendSpec = Field(default_factory=AscendSpec,
                               description="The Ascend software on the nodes (CANN environment).")
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    dataset: str = Field(description="MindRecord dataset path on the nodes (file or directory).")
    output_dir: str = Field("output", description="MindFormers output dir, relative to the node job dir.")
    master_addr: str | None = Field(None, description="MASTER_ADDR override (training network address).")
    master_port: int = Field(8118, ge=1024, le=65535, description="msrun scheduler port.")
    cluster_timeout: int = Field(600, ge=10, description="msrun --cluster_time_out in seconds.")
    launcher: Literal["msrun", "mindformers"] = Field("msrun", description="How nodes start training.")
    mindformers_home: str | None = Field(
        None, description="MindFormers source dir on the nodes (launcher 'mindformers').")
    register_path: str | None = Field(
        None, description="--register_path for run_mindformer.py (launcher 'mindformers'), e.g. research/x.")
    workdir: str = Field(
        "mfctl-jobs",
        description="Remote work dir on SSH nodes (relative paths are under the user's home); the job "
        "runs in <workdir>/<name>. Local jobs run in the job dir itself.",
    )
    python: str = Field("python3", description="Python on the nodes with mindspore, mindformers, msrun.")
    setup: str | None = Field(
        None, description="A shell line run before launch on each node, e.g. 'source /opt/env.sh'.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the workers.")

    @model_validator(mode="after")
    def _scheduler(self) -> JobSpec:
        if self.scheduler == "slurm" and self.slurm is None:
            raise ValueError("'slurm' needs a 'slurm:' section with partition and node_count")
        if self.scheduler == "hosts" and self.slurm is not None:
            raise ValueError("is 'hosts' but a 'slurm:' section is given; set 'scheduler: slurm'")
        return self

    @model_validator(mode="after")
    def _devices(self) -> JobSpec:
        if self.devices is None:
            return self
        count = len(self.devices)
        if "devices_per_node" in self.model_fields_set and self.devices_per_node != count:
            raise SpecKeyError(("devices",), f"lists {count} device(s) but devices_per_node is "
                               f"{self.devices_per_node}; drop devices_per_node (the list sets it)")
        if "ASCEND_RT_VISIBLE_DEVICES" in self.env:
            raise SpecKeyError(("devices",), "and env.ASCEND_RT_VISIBLE_DEVICES are both set; "
                               "keep devices (it sets ASCEND_RT_VISIBLE_DEVICES)")
        self.devices_per_node = count
        return self

    @field_validator("devices", mode="before")
    @classmethod
    def _device_list(cls, v: object) -> object:
        return None if v is None else parse_devices(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"job name {v!r} must be 1-64 letters, digits, '.', '_' or '-' (no spaces or slashes)")
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env_scalars(cls, v: object) -> object:
        # OMP_NUM_THREADS: 4 is a string to the environment; YAML reads it as a number.
        if isinstance(v, dict):
            return {k: (str(x).lower() if isinstance(x, bool) else str(x))
                    if isinstance(x, (int, float)) else x for k, x in v.items()}
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"environment variable name {key!r} is not valid (use A-Z, 0-9, _)")
            if key.startswith("MFCTL_"):
                raise ValueError(f"environment variable {key!r}: the MFCTL_ prefix is reserved")
            problem = hccl_problem(key, v[key])
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, v: str) -> str:
        # msrun's log dir and MindFormers' output_dir are both derived from it as paths under the
        # node job dir; an absolute path would split them (logs there, checkpoints here).
        if not v or v.startswith("/") or ".." in v.split("/"):
            raise ValueError(f"must be a path inside the node job dir (like 'output'), got {v!r}")
        return v

    @field_validator("python")
    @classmethod
    def _python(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"python must be a command or path without spaces, got {v!r}; "
                             "use 'setup' for an activation line")
        return v


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each key path in the composed YAML to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            for sub, line in _line_index(value_node, path + (key,)).items():
                if sub != path + (key,):
                    lines[sub] = line
    return lines


def _refuse_duplicates(node: yaml.Node, filename: str, path: str = "") -> None:
    """YAML lets a later key silently replace an earlier one: refuse it, an edit would be lost."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key is not None and key in seen:
            raise BadInput(f"{filename}:{line}: {path}{key} is set twice (lines {seen[key]} and "
                           f"{line}); keep one")
        seen[key] = line
        _refuse_duplicates(value_node, filename, f"{path}{key}.")


def yaml_error_mark(exc: yaml.YAMLError) -> yaml.Mark | None:
    """The mark to name for a YAML error: where an unclosed bracket or quote began beats where
    the parser gave up, but a block mapping's start (maybe the top of the file) does not."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return None
    context = exc.context or ""
    if exc.context_mark is not None and ("flow" in context or "quoted" in context):
        return exc.context_mark
    return exc.problem_mark or exc.context_mark


def parse_spec(text: str, filename: str = SPEC_FILE) -> JobSpec:
    """Parse and validate a job spec; raise ``BadInput`` naming ``file:line``."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = yaml_error_mark(exc)
        where = f"{filename}:{mark.line + 1}" if mark is not None else filename
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{where}: not valid YAML ({problem}); fix the syntax") from None
    if node is None or not isinstance(data, dict):
        raise BadInput(f"{filename}:1: expected a mapping of job settings (name, model, dataset, ...); "
                       "create one with 'mfctl init'")
    _refuse_duplicates(node, filename)
    lines = _line_index(node)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SpecKeyError):
            loc = cause.key
        if not loc:
            # The model-level check of scheduler against its section: name the key that is there.
            present = next((k for k in (("scheduler",), ("slurm",)) if k in lines), None)
            if present is not None:
                lines[("scheduler",)] = lines[present]
                loc = ("scheduler",)
        # The nearest key of the location that the YAML has (a missing key: its parent).
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        key = ".".join(str(p) for p in loc) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = f"is required; add a '{loc[-1]}:' line"
            line = 1 if line is None else line
        elif err["type"] == "string_type":
            msg += "; quote the value"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known setting (see 'mfctl init --help' for the settings)"
        where = f"{filename}:{line}" if line else filename
        raise BadInput(f"{where}: {key} {msg}") from None


def dump_spec(spec: JobSpec) -> str:
    """The spec as YAML, in the order people read it."""
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["parallel"] = spec.parallel.model_dump(exclude_none=True)
    data["train"] = spec.train.model_dump(exclude_defaults=True)
    if spec.scheduler == "hosts":
        data.pop("scheduler", None)
    else:
        data.pop("hosts", None)
    if spec.slurm is not None:
        data["slurm"] = spec.slurm.model_dump(exclude_defaults=True)
    if spec.devices is not None:
        data.pop("devices_per_node", None)  # the list's length
    data["ascend"] = spec.ascend.model_dump(exclude_none=True)
    if not data["ascend"]:
        data.pop("ascend")
    for section in ("parallel", "train"):
        if not data.get(section):
            data.pop(section, None)
    if not data.get("env"):
        data.pop("env", None)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
