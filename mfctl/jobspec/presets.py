"""Model presets as data: ``configs/presets/<name>.yaml``, validated here (pure: text in, model out).

A preset is the published MindFormers recipe a user picks with ``--model``: its layout, batch,
optimizer, schedule, recompute, precision, loss scale, model dimensions and token ids. The
MindFormers-native blocks (optimizer, lr_schedule, parallel, recompute_config, context, model
config, runner_wrapper) are kept as the mappings MindFormers reads, so the file can be compared
with the upstream YAML key by key; what mfctl itself reasons about (layout, batch, model shape)
is typed. Reading the files is the I/O edge's job (``mfctl.presets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mfctl.errors import BadInput


@dataclass(frozen=True, slots=True)
class ModelShape:
    seq_length: int
    hidden_size: int
    num_layers: int
    num_heads: int
    n_kv_heads: int
    vocab_size: int

    def as_dict(self) -> dict[str, int]:
        return {
            "seq_length": self.seq_length,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "n_kv_heads": self.n_kv_heads,
            "vocab_size": self.vocab_size,
        }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where the recipe was published: a MindFormers tag and the config's path in that tree."""

    tag: str = Field(description="MindFormers release tag, e.g. v1.5.0.")
    path: str = Field(description="The recipe's path inside that MindFormers tree.")


class PresetLayout(_Strict):
    """The published device layout (the reference when the job runs on another device count)."""

    nodes: int = Field(ge=1)
    devices_per_node: int = Field(ge=1)
    data_parallel: int = Field(ge=1)
    model_parallel: int = Field(ge=1)
    pipeline_stage: int = Field(ge=1)
    micro_batch_num: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self) -> PresetLayout:
        world = self.nodes * self.devices_per_node
        if self.data_parallel * self.model_parallel * self.pipeline_stage != world:
            raise ValueError(f"dp x mp x pp must equal nodes x devices_per_node ({world})")
        return self


class PresetTrain(_Strict):
    """Batch, steps and checkpoints: runner_config, train_dataset and the checkpoint callback."""

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="runner_config.batch_size: the per-device batch.")
    dataset_batch_size: int | None = Field(
        None, ge=1, description="train_dataset.batch_size as published (MindFormers overwrites it "
        "with runner_config.batch_size); default: batch_size.")
    gradient_accumulation_steps: int = Field(1, ge=1)
    sink_mode: bool = True
    sink_size: int = Field(1, ge=1)
    save_checkpoint_steps: int = Field(ge=1)
    checkpoint_prefix: str | None = Field(None,
                                          description="CheckpointMonitor prefix; default: the job name.")


class PresetModel(_Strict):
    """The model: dimensions mfctl validates layouts against, plus the rest of ``model_config``."""

    name: str = Field(description="trainer.model_name")
    seq_length: int = Field(ge=8)
    hidden_size: int = Field(ge=1)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    n_kv_heads: int | None = Field(None, ge=1, description="GQA key/value heads; unset = num_heads.")
    vocab_size: int = Field(ge=2)
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="Further model_config keys, rendered as written.")

    @field_validator("config")
    @classmethod
    def _no_dims(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & {"type", "seq_length", "hidden_size", "num_layers", "num_heads",
                                 "n_kv_heads", "vocab_size"})
        if clash:
            raise ValueError(f"{', '.join(clash)} belong in model:, not model.config:")
        return v


class Preset(_Strict):
    """One ``configs/presets/<name>.yaml``."""

    name: str
    description: str
    source: Source | None = Field(None, description="The published recipe (None: mfctl's own).")
    template: str = Field(description="The Jinja2 template under templates/ that renders it.")
    device_target: Literal["Ascend", "GPU", "CPU"]
    layout: PresetLayout
    train: PresetTrain
    llama: PresetModel = Field(alias="model")
    optimizer: dict[str, Any] = Field(default_factory=dict)
    lr_schedule: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict, description="Further train_dataset keys.")
    parallel: dict[str, Any] = Field(default_factory=dict, description="MindFormers' parallel block.")
    parallel_config: dict[str, Any] = Field(
        default_factory=dict, description="parallel_config keys besides dp/mp/pp/micro_batch_num.")
    micro_batch_interleave_num: int = Field(1, ge=1)
    recompute_config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict, description="Further context keys.")
    runner_wrapper: dict[str, Any] = Field(default_factory=dict)
    processor: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _blocks(self) -> Preset:
        if self.template != "tiny-llama.yaml.j2":
            for block in ("optimizer", "lr_schedule", "runner_wrapper"):
                if "type" not in getattr(self, block):
                    raise ValueError(f"{block}: needs a 'type' (the MindFormers class to build)")
        shape = self.model
        if shape.num_heads % shape.n_kv_heads:
            raise ValueError(f"model: num_heads {shape.num_heads} is not a multiple of n_kv_heads "
                             f"{shape.n_kv_heads}")
        return self

    # The names the rest of mfctl reads (layout choice, rendering, status).
    @property
    def model(self) -> ModelShape:
        m = self.llama
        return ModelShape(m.seq_length, m.hidden_size, m.num_layers, m.num_heads,
                          m.n_kv_heads or m.num_heads, m.vocab_size)

    @property
    def nodes(self) -> int:
        return self.layout.nodes

    @property
    def devices_per_node(self) -> int:
        return self.layout.devices_per_node

    @property
    def world_size(self) -> int:
        return self.layout.nodes * self.layout.devices_per_node

    @property
    def data_parallel(self) -> int:
        return self.layout.data_parallel

    @property
    def model_parallel(self) -> int:
        return self.layout.model_parallel

    @property
    def pipeline_stage(self) -> int:
        return self.layout.pipeline_stage

    @property
    def micro_batch_num(self) -> int:
        return self.layout.micro_batch_num

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    @property
    def epochs(self) -> int:
        return self.train.epochs

    @property
    def save_checkpoint_steps(self) -> int:
        return self.train.save_checkpoint_steps

    @property
    def semi_auto_parallel(self) -> bool:
        """parallel_mode 1 (semi-auto): gradient accumulation and pipeline micro batches apply."""
        return int(self.parallel.get("parallel_mode", 1)) in (1, 2)

    @property
    def precision(self) -> str:
        cfg = self.llama.config
        return (f"compute {cfg.get('compute_dtype', 'float16')}, "
                f"params {cfg.get('param_init_type', 'float16')}")


def parse_preset(text: str, filename: str) -> Preset:
    """Validate one preset file; ``BadInput`` names ``file:line`` and the key."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark is not None else filename
        raise BadInput(f"{where}: not valid YAML; fix the preset's syntax") from None
    if not isinstance(data, dict):
        raise BadInput(f"{filename}:1: a preset is a mapping (name, layout, train, model, ...)")
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and ": " in msg:
            # A check across the whole preset names its section first: point at that section.
            head, rest = msg.split(": ", 1)
            if head in data:
                loc, msg = [head], rest
        line = _line_of(node, loc)
        raise BadInput(f"{filename}:{line}: {'.'.join(loc) or 'preset'}: {msg}") from None


def _line_of(node: yaml.Node | None, path: list[str]) -> int:
    """The line of the deepest key of ``path`` the YAML has (1 when none)."""
    line = 1
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == key:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            break
    return line
