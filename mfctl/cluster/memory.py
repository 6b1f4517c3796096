"""Device memory per pipeline stage, from the rendered MindFormers config (pure: a dict in, bytes out).

Per stage s (of pp) and per device, with P_s the stage's parameters on one device:

- P_s = (layers_s x L + embedding on s = 0 + LM head and final norm on s = pp - 1) / mp, where a
  Llama layer has L = 2h^2 + 2 h h_kv (q, o; k, v with GQA) + 3 h f (SwiGLU) + 2h (norms). f is
  ``intermediate_size`` or MindFormers' rule from ``ffn_dim_multiplier`` and ``multiple_of``. The
  embedding and head (V x h each) are sharded by mp unless ``vocab_emb_dp``. Layers per stage:
  num_layers // pp + ``offset`` (MindFormers' LayerSetting).
- **params**: P_s in ``param_init_type``, divided by the optimizer shard (dp) when
  ``parallel.enable_parallel_optimizer`` is on, plus the full weights that forward keeps for
  backward: the AllGather result of optimizer parallel (unless ``parallel_optimizer_comm_recompute``)
  or the cast to ``compute_dtype`` when the two dtypes differ (dropped under full recompute).
- **grads**: ``accu_grads`` of P_s in ``param_init_type`` when pp > 1 or gradient accumulation is
  on (MindFormers' wrapper clones the weights; divided by dp only with
  ``gradient_accumulation_shard``); otherwise the gradients themselves, reduce-scattered across dp
  under optimizer parallel.
- **optimizer**: AdamW-type optimizers keep two float32 moments (8 bytes a parameter;
  MindSpore's plain ``AdamWeightDecay`` keeps them in the parameter dtype), sharded across dp by
  optimizer parallel. With dp 1 nothing is sharded.
- **activations**, bytes per layer per micro batch of b sequences of s tokens (Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models", section 4, redone for a
  Llama layer instead of GPT's): the norm inputs and outputs 8sbh (divided by mp only with sequence
  parallel), and q, the attention output 4sbh, k and v 4 s b h_kv, the SwiGLU gate, SiLU, up and
  product 8sbf, divided by mp. Flash attention keeps only its softmax statistics (64 a s b bytes);
  without it the a s^2 b scores are kept in ``softmax_compute_type`` (plus their cast).
  ``select_recompute`` (MindFormers' default patterns ``feed_forward.mul`` and
  ``feed_forward.w1.activation.silu``; without flash attention also the score ops) drops 4sbf;
  ``select_comm_recompute`` (``.*\\.norm``) drops the norm outputs; full ``recompute`` keeps only
  the layer input (2sbh, divided by mp with sequence parallel or ``recompute_slice_activation``)
  and rebuilds one layer during backward. Lists give the count per stage. Under 1F1B stage s
  holds min(pp - s, micro_batch_num) micro batches. The last stage adds the logits in the compute
  dtype and the float32 softmax the loss keeps for backward: (cbytes + 4) x s x b x V / mp.
- **other**: what MindSpore's pool holds besides tensors: kernel workspace, communication buffers,
  graph constants and fragmentation, taken as 1 GiB plus 3% of the rest (on Ascend; 0 on CPU).

The limit is ``context.max_device_memory`` (MindSpore's "GB" is 2^30 bytes), else the device HBM
the caller knows, else 64 GB, said as an assumption.

Where MindSpore differs from Megatron-LM's ``theoretical_memory_usage`` (megatron/training/
theoretical_memory_usage.py): Megatron counts 18 bytes a parameter (fp16 weights, fp32 main
weights and gradients, two fp32 moments), or 6 + 12/dp with its distributed optimizer; MindSpore
keeps no separate fp32 main copy: the weights live in ``param_init_type`` only, the gradients and
``accu_grads`` in the same dtype. MindSpore's optimizer parallel (docs: "Optimizer Parallel")
shards the weights themselves across dp and gathers them in forward, so the gathered copies count
while they wait for backward. Megatron's activations assume GPT's GeLU MLP and dropout (34sbh +
5as^2b); a Llama layer has no dropout and a SwiGLU MLP of width f.

Anything the config asks for that this model does not know is named in ``unaccounted`` (never
counted as zero in silence); what was assumed is in ``assumptions``. Checked against the layouts
MindFormers publishes with their ``max_device_memory`` (tests/data/memory/published.yaml): each
fits and uses more than half of it, and the layouts known not to run do not fit.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GIB = 1024 ** 3
DEFAULT_HBM_GB = 64.0
_DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "half": 2, "bfloat16": 2, "bf16": 2}
#: Optimizers and the bytes of state they keep per parameter (None: two moments in the param dtype).
_OPTIMIZER_BYTES: dict[str, int | None] = {
    "adamw": 8, "fp32stateadamweightdecay": 8, "fusedadamweightdecay": 8, "pmaadamw": 8,
    "adamweightdecayx": 8, "adam": 8, "lamb": 8, "adamweightdecay": None, "momentum": 4, "sgd": 0,
}
RUNTIME_RESERVE = 1 * GIB
FRAGMENTATION = 0.03


@dataclass(frozen=True, slots=True)
class StageMemory:
    stage: int
    layers: int
    in_flight: int
    params: float
    grads: float
    optimizer: float
    activations: float
    other: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations + self.other

    def to_json(self) -> dict[str, Any]:
        parts = {k: round(getattr(self, k) / GIB, 2)
                 for k in ("params", "grads", "optimizer", "activations", "other")}
        # total_gb is the sum of the rounded parts, so the parts add up to it exactly as printed.
        return {"stage": self.stage, "layers": self.layers, "micro_batches_in_flight": self.in_flight,
                **{f"{k}_gb": v for k, v in parts.items()}, "total_gb": round(sum(parts.values()), 2)}


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    limit: float
    limit_source: str
    stages: tuple[StageMemory, ...]
    assumptions: tuple[str, ...] = ()
    unaccounted: tuple[str, ...] = ()

    @property
    def peak(self) -> StageMemory:
        return max(self.stages, key=lambda s: s.total)

    @property
    def fits(self) -> bool:
        return self.peak.total <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {"limit_gb": round(self.limit / GIB, 2), "limit_source": self.limit_source,
                "fits": self.fits, "peak_stage": self.peak.stage,
                "stages": [s.to_json() for s in self.stages],
                "assumptions": list(self.assumptions), "unaccounted": list(self.unaccounted)}


def parse_size(text: Any) -> float | None:
    """``'58GB'``, ``'52.5GB'``, ``'1024MB'`` as bytes (MindSpore's units are powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if not m:
        return None
    return float(m.group(1)) * 1024 ** "BKMGT".index((m.group(2) or "B").upper())


def get_path(d: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return default
        d = d[key]
    return default if d is None else d


def ffn_width(mc: Mapping[str, Any], h: int) -> int:
    """SwiGLU width: ``intermediate_size``, else MindFormers' rule (LlamaFeedForward): 4h, times
    (ffn_dim_multiplier + 0.01) if set, times 2/3, rounded up to multiple_of."""
    if mc.get("intermediate_size"):
        return int(mc["intermediate_size"])
    width = 4 * h
    if mc.get("ffn_dim_multiplier"):
        width = int((float(mc["ffn_dim_multiplier"]) + 0.01) * width)
    width = int(2 * width / 3)
    multiple = int(mc.get("multiple_of") or 256)
    return multiple * ((width + multiple - 1) // multiple)


def _per_stage(value: Any, stage: int, layers: int) -> int:
    """How many of a stage's layers a recompute option covers: True = all, a list = per stage."""
    if value is True:
        return layers
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in value):
        return min(layers, value[stage]) if stage < len(value) else 0
    return 0


def _layers_per_stage(num_layers: int, pp: int, offset: Any, notes: list[str]) -> list[int]:
    base = num_layers // pp
    if not isinstance(offset, list):
        offs = [int(offset or 0)] * pp  # MindFormers broadcasts a single offset to every stage
    elif len(offset) == pp and all(isinstance(o, int) and not isinstance(o, bool) for o in offset):
        offs = list(offset)
    else:
        notes.append(f"model_config.offset {offset!r} is not one integer per stage: counted as 0")
        offs = [0] * pp
    layers = [max(0, base + o) for o in offs]
    missing = num_layers - sum(layers)
    if missing:
        notes.append(f"{num_layers} layers on {pp} stages: the {abs(missing)} layer(s) the offset does "
                     "not place are put on the last stages")
        for i in range(abs(missing)):
            layers[pp - 1 - i % pp] += 1 if missing > 0 else -1
    return layers


def estimate(config: Mapping[str, Any], device_hbm_gb: float | None = None) -> MemoryEstimate:
    """Per-stage, per-device memory of a rendered MindFormers config (see the module docstring)."""
    notes: list[str] = []
    unknown: list[str] = []
    mc = get_path(config, "model", "model_config", default={})
    pc = get_path(config, "parallel_config", default={})
    rc = get_path(config, "recompute_config", default={})
    par = get_path(config, "parallel", default={})
    ctx = get_path(config, "context", default={})
    cpu = str(get_path(ctx, "device_target", default="Ascend")).upper() == "CPU"

    def dim(key: str, default: int | None = None) -> int:
        value = mc.get(key, default)
        if value is None:
            raise KeyError(key)
        return int(value)

    h, n_layers, heads = dim("hidden_size"), dim("num_layers"), dim("num_heads")
    kv = int(mc.get("n_kv_heads") or heads)
    vocab, seq = dim("vocab_size"), dim("seq_length")
    f = ffn_width(mc, h)
    h_kv = h * kv // heads
    dp, mp, pp = (int(get_path(pc, k, default=1)) for k in ("data_parallel", "model_parallel", "pipeline_stage"))
    mbn = int(get_path(pc, "micro_batch_num", default=1))
    b = int(get_path(config, "runner_config", "batch_size", default=1))
    gas = int(get_path(config, "runner_config", "gradient_accumulation_steps", default=1))
    sp = bool(get_path(pc, "use_seq_parallel", default=False)) and mp > 1
    vocab_dp = bool(get_path(pc, "vocab_emb_dp", default=True))

    def dtype(key: str, default: str) -> int:
        name = str(mc.get(key) or default).lower()
        if name not in _DTYPE_BYTES:
            unknown.append(f"model_config.{key} {name!r} is not a dtype the estimator knows: counted "
                           "as 4 bytes")
            return 4
        return _DTYPE_BYTES[name]

    pbytes = dtype("param_init_type", "float16")
    cbytes = dtype("compute_dtype", "float16")
    ebytes = _DTYPE_BYTES.get(str(mc.get("embedding_init_type") or "").lower(), pbytes)
    smbytes = dtype("softmax_compute_type", "float32")
    flash = bool(mc.get("use_flash_attention", False))

    opt_type = str(get_path(config, "optimizer", "type", default="AdamW"))
    state_bytes = _OPTIMIZER_BYTES.get(opt_type.lower(), 8)
    if opt_type.lower() not in _OPTIMIZER_BYTES:
        unknown.append(f"optimizer {opt_type}: not known to the estimator; counted as AdamW's two "
                       "float32 moments")
    if state_bytes is None:
        state_bytes = 2 * pbytes

    opt_parallel = bool(get_path(par, "enable_parallel_optimizer", default=False)) and not cpu
    shard_size = int(get_path(par, "parallel_optimizer_config", "optimizer_weight_shard_size", default=-1))
    shard = (min(dp, shard_size) if shard_size > 0 else dp) if opt_parallel else 1
    accu_shard = bool(get_path(par, "parallel_optimizer_config", "gradient_accumulation_shard",
                           default=False))
    comm_recompute = bool(get_path(rc, "parallel_optimizer_comm_recompute", default=False))
    if opt_parallel and dp == 1:
        notes.append("optimizer parallel is on but dp is 1: it shards nothing")

    recompute = get_path(rc, "recompute", default=False)
    select = get_path(rc, "select_recompute", default=False)
    select_comm = get_path(rc, "select_comm_recompute", default=False)
    slice_act = bool(get_path(rc, "recompute_slice_activation", default=False))
    for key, value in (("recompute", recompute), ("select_recompute", select),
                       ("select_comm_recompute", select_comm)):
        if isinstance(value, Mapping) or (isinstance(value, list) and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value)):
            notes.append(f"recompute_config.{key} names operators or layers: counted as no {key} "
                         "(an upper bound)")
    if isinstance(config.get("swap_config"), Mapping) and get_path(config, "swap_config", "swap"):
        unknown.append("swap_config: host offload is not modelled; the estimate keeps everything on "
                       "the device")
    if isinstance(get_path(config, "moe_config"), Mapping) and int(get_path(config, "moe_config", "expert_num",
                                                                   default=1)) > 1:
        unknown.append("moe_config: the experts' parameters and activations are not in this estimate")
    if int(get_path(config, "model", "model_config", "pp_interleave_num", default=1)) > 1:
        notes.append("pp_interleave_num > 1: counted as plain 1F1B")
    arch = str(get_path(config, "model", "arch", "type", default="LlamaForCausalLM"))
    if "llama" not in arch.lower():
        notes.append(f"model {arch}: counted as a Llama decoder with the same dimensions")

    layer_params = 2 * h * h + 2 * h * h_kv + 3 * h * f + 2 * h
    emb_params = vocab * h / (1 if vocab_dp else mp)
    stage_layers = _layers_per_stage(n_layers, pp, mc.get("offset", 0), notes)

    # Activations of one layer and one micro batch, in bytes (see the docstring).
    sb = seq * b
    norm_part = 8 * sb * h / (mp if sp else 1)
    shard_part = (4 * sb * h + 4 * sb * h_kv + 8 * sb * f) / mp
    attn = 64 * heads * sb / mp if flash else heads * seq * sb * (smbytes + cbytes) / mp
    full = norm_part + shard_part + attn
    drop_select = 4 * sb * f / mp + (0 if flash else attn)
    drop_comm = 4 * sb * h / (mp if sp else 1)
    kept_input = 2 * sb * h / (mp if (sp or slice_act) else 1)

    stages = []
    for s, layers in enumerate(stage_layers):
        first, last = s == 0, s == pp - 1
        stage_params = layers * layer_params / mp + (emb_params if first else 0) + (
            emb_params + h if last else 0)
        n_full = _per_stage(recompute, s, layers)
        n_select = min(layers - n_full, _per_stage(select, s, layers))
        n_comm = min(layers - n_full, _per_stage(select_comm, s, layers))
        in_flight = min(pp - s, mbn) if pp > 1 else 1

        stored = stage_params * pbytes / shard
        gathered = 0.0
        if shard > 1 and not comm_recompute:
            gathered = stage_params * cbytes
        elif pbytes != cbytes:
            gathered = (layers - n_full) * layer_params / mp * cbytes + (
                (emb_params if first else 0) + (emb_params if last else 0)) * cbytes
        if (first or last) and ebytes != pbytes:
            stored += emb_params * (ebytes - pbytes) / shard
        accumulate = pp > 1 or gas > 1
        grads = stage_params * pbytes / (shard if (accu_shard or not accumulate) else 1)
        optimizer = stage_params * state_bytes / shard

        per_mb = (n_full * kept_input + (layers - n_full) * full - n_select * drop_select
                  - n_comm * drop_comm)
        extra = 0.0
        if first:
            per_mb += 2 * sb * h  # the embedding output
        if last:
            per_mb += 4 * sb * h / mp + (4 + cbytes) * sb * vocab / (1 if vocab_dp else mp)
        if n_full:
            extra = full  # one layer rebuilt during backward
        activations = per_mb * in_flight + extra

        rest = stored + gathered + grads + optimizer + activations
        other = 0.0 if cpu else RUNTIME_RESERVE + FRAGMENTATION * rest
        stages.append(StageMemory(s, layers, in_flight, stored + gathered, grads, optimizer,
                                  activations, other))

    limit = parse_size(get_path(ctx, "max_device_memory")) if get_path(ctx, "max_device_memory") else None
    if limit is not None:
        source = "context.max_device_memory"
    elif device_hbm_gb:
        limit, source = device_hbm_gb * GIB, "the devices' HBM (preflight)"
    else:
        limit, source = DEFAULT_HBM_GB * GIB, "assumed"
        notes.append(f"context.max_device_memory is not set and the devices' HBM is not known: "
                     f"assumed {DEFAULT_HBM_GB:g} GB per device")
    return MemoryEstimate(limit, source, tuple(stages), tuple(notes), tuple(unknown))


def missing_keys(config: Mapping[str, Any]) -> list[str]:
    """The model dimensions the estimator needs and the config lacks."""
    mc = get_path(config, "model", "model_config", default={})
    return [f"model.model_config.{k}" for k in ("seq_length", "hidden_size", "num_layers", "num_heads",
                                                "vocab_size") if mc.get(k) is None]


def with_changes(config: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with dotted keys set (``recompute_config.recompute``: True)."""
    out = copy.deepcopy(dict(config))
    for dotted, value in changes.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out

