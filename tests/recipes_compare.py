"""Key-by-key comparison of a rendered config with a published MindFormers recipe (test helper).

Configs are flattened to dotted keys (``parallel_config.data_parallel``); a list of mappings with a
``type`` (callbacks) is keyed by type (``callbacks[CheckpointMonitor].save_checkpoint_steps``);
other lists are values. Only keys that shape training are compared: job-specific paths, evaluation,
profiling, logging and cloud keys are left out (``NOT_TRAINING``).
"""

from __future__ import annotations

import re
from typing import Any

#: Key prefixes that do not shape training, or that mfctl sets per job from mfctl.yaml.
NOT_TRAINING = (
    "output_dir", "load_checkpoint", "src_strategy_path_or_dir", "auto_trans_ckpt",
    "only_save_strategy", "resume_training", "run_mode", "use_parallel",
    "train_dataset.data_loader.dataset_dir", "train_dataset_task", "eval_dataset", "eval_dataset_task",
    "eval_callbacks", "do_eval", "auto_tune", "filepath_prefix", "autotune_per_step", "profile",
    "profile_start_step", "profile_stop_step", "profile_communication", "profile_memory",
    "init_start_profile", "layer_scale", "layer_decay", "lr_scale_factor", "remote_save_url",
    "processor", "metric", "context.save_graphs", "context.save_graphs_path", "context.device_id",
    "callbacks[MFLossMonitor]", "callbacks[ObsMonitor]", "parallel.strategy_ckpt_save_file",
)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and all(isinstance(v, dict) and "type" in v for v in data):
        for item in data:
            out.update(flatten({k: v for k, v in item.items() if k != "type"},
                               f"{prefix}[{item['type']}]"))
            out[f"{prefix}[{item['type']}].type"] = item["type"]
    else:
        out[prefix] = data
    return out


def training_keys(flat: dict[str, Any]) -> dict[str, Any]:
    def shaping(key: str) -> bool:
        return not any(key == p or key.startswith((p + ".", p + "["))
                       or (p.endswith("]") and key.startswith(p)) for p in NOT_TRAINING)
    return {k: v for k, v in flat.items() if shaping(k)}


_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


def lookup(flat: dict[str, Any], key: str) -> Any:
    """``flat[key]``, where ``key`` may end in ``[i]`` to pick an element of a list value."""
    m = _INDEX.match(key)
    if m and m.group(1) in flat:
        return flat[m.group(1)][int(m.group(2))]
    return flat[key]


def same(a: Any, b: Any) -> bool:
    """Equal as YAML values: 0 and 0.0 are the same number, a bool is not a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
