"""Model presets: the published MindFormers pretraining layouts, as data.

The numbers a preset needs for validation (heads, layers, the reference layout) live here; the
full MindFormers config lives in ``templates/<name>.yaml.j2`` and takes the same numbers from the
render context, so each is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    description: str
    template: str
    model: ModelShape
    nodes: int
    devices_per_node: int
    data_parallel: int
    model_parallel: int
    pipeline_stage: int
    micro_batch_num: int
    device_target: str
    batch_size: int
    epochs: int
    save_checkpoint_steps: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        return self.nodes * self.devices_per_node


PRESETS: dict[str, Preset] = {
    "llama2-7b": Preset(
        name="llama2-7b",
        description="Llama2-7B pretraining, published layout: 1 node x 8 devices, dp 8",
        template="llama2-7b.yaml.j2",
        model=ModelShape(seq_length=4096, hidden_size=4096, num_layers=32, num_heads=32,
                         n_kv_heads=32, vocab_size=32000),
        nodes=1, devices_per_node=8,
        data_parallel=8, model_parallel=1, pipeline_stage=1, micro_batch_num=1,
        device_target="Ascend", batch_size=1, epochs=2, save_checkpoint_steps=500,
    ),
    "llama3-70b": Preset(
        name="llama3-70b",
        description="Llama3-70B pretraining, published layout: 8 nodes x 8 devices, mp 8, pp 8",
        template="llama3-70b.yaml.j2",
        model=ModelShape(seq_length=8192, hidden_size=8192, num_layers=80, num_heads=64,
                         n_kv_heads=8, vocab_size=128256),
        nodes=8, devices_per_node=8,
        data_parallel=1, model_parallel=8, pipeline_stage=8, micro_batch_num=256,
        device_target="Ascend", batch_size=1, epochs=2, save_checkpoint_steps=500,
    ),
    "tiny-llama": Preset(
        name="tiny-llama",
        description="A 2-layer Llama that trains on a CPU in minutes: 1 node x 2 workers, dp 2",
        template="tiny-llama.yaml.j2",
        model=ModelShape(seq_length=64, hidden_size=64, num_layers=2, num_heads=4,
                         n_kv_heads=4, vocab_size=1000),
        nodes=1, devices_per_node=2,
        data_parallel=2, model_parallel=1, pipeline_stage=1, micro_batch_num=1,
        device_target="CPU", batch_size=4, epochs=1, save_checkpoint_steps=16,
    ),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)
