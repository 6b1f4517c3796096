"""mfctl's MindFormers training entry: what ``msrun`` runs on every node.

The MindFormers wheel does not ship ``run_mindformer.py`` (it lives in the source tree), so mfctl
brings its own entry written against the public API:

    YAML -> MindFormerConfig -> command-line overrides -> (CPU config values) -> output path
         -> build_context(config) -> (CPU train cell registered) -> Trainer(config).train()

It is copied verbatim into each job's bundle (``<bundle>/node/train.py`` beside ``cpu_compat.py``
and ``cpu_train.py``) and run as a script: ``msrun ... <bundle>/node/train.py --config X.yaml ...``.
msrun starts it as ``python <script> <args>`` (``python`` from PATH) once per worker, and once more
on the master node as the cluster scheduler (``MS_ROLE=MS_SCHED``), with the cwd it was started in
(mfctl uses the job directory, where MindFormers creates ``output/``). So this file imports only
the standard library, mindspore and mindformers, and finds ``cpu_compat`` and ``cpu_train`` as
sibling modules (the script's directory is ``sys.path[0]``).

Usage:
    python train.py --config X.yaml [--train_dataset_dir D] [--run_mode train]
        [--use_parallel True] [--load_checkpoint P] [--resume_training True]
        [--output_dir O] [--register_path R] [--seed N] [--epochs N] [--batch_size N]
        [--device_target CPU] [--section.key VALUE ...]

Relative paths (--config, --register_path) are taken from the current directory. Any further
``--a.b.c VALUE`` pair overrides that key of the config (VALUE: true/false/none/number/text).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

RUN_MODES = ("train", "finetune", "eval", "predict")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def str2bool(text: str) -> bool:
    """argparse type for True/False flags (the spelling MindFormers' launcher uses)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def bool_or_name(text: str) -> bool | str:
    """--resume_training: True/False, or the name of the checkpoint file to resume from."""
    try:
        return str2bool(text)
    except argparse.ArgumentTypeError:
        return text


def parse_value(text: str) -> Any:
    """A config override value: true/false/none, a number, JSON (lists, quoted text), else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null", "~"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train with MindFormers from a YAML config (mfctl's run_mindformer.py).",
    )
    p.add_argument("--config", required=True, help="MindFormers YAML config")
    p.add_argument("--run_mode", choices=RUN_MODES, default=None, help="default: the config's")
    p.add_argument("--train_dataset_dir", default=None, help="MindRecord file or directory")
    p.add_argument("--use_parallel", type=str2bool, default=None, help="True under msrun")
    p.add_argument("--load_checkpoint", default=None, help="checkpoint file or directory to load")
    p.add_argument("--resume_training", type=bool_or_name, default=None,
                   help="True to resume from load_checkpoint's latest checkpoint, or a file name")
    p.add_argument("--output_dir", default=None, help="checkpoints, strategy files and logs")
    p.add_argument("--register_path", default=None,
                   help="directory of user modules to register with MindFormers (REGISTER_PATH)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None, help="per device")
    p.add_argument("--device_target", default=None, help="CPU, GPU or Ascend")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Known flags, plus ``--a.b VALUE`` / ``--a.b=VALUE`` overrides as {"a.b": value}."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    tokens = [part for item in rest for part in (item.split("=", 1) if item.startswith("--") else [item])]
    overrides: dict[str, Any] = {}
    while tokens:
        key = tokens.pop(0)
        if not key.startswith("--") or len(key) < 3:
            parser.error(f"unexpected argument {key!r}: overrides are --section.key VALUE")
        if not tokens or tokens[0].startswith("--"):
            parser.error(f"override {key} has no value: write {key} VALUE")
        overrides[key[2:]] = parse_value(tokens.pop(0))
    return args, overrides


def apply_overrides(config: Any, args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Write the command-line values into the MindFormerConfig (dotted keys last, they win)."""
    if args.run_mode is not None:
        config.run_mode = args.run_mode
    if args.use_parallel is not None:
        config.use_parallel = args.use_parallel
    if args.load_checkpoint is not None:
        config.load_checkpoint = args.load_checkpoint
    if args.resume_training is not None:
        config.resume_training = args.resume_training
    if args.output_dir is not None:
        config.output_dir = args.output_dir
    if args.seed is not None:
        config.seed = args.seed
    if args.device_target is not None:
        config.context.device_target = args.device_target
    if args.epochs is not None:
        config.runner_config.epochs = args.epochs
    if args.batch_size is not None:
        config.runner_config.batch_size = args.batch_size
        if config.get("train_dataset"):
            config.train_dataset.batch_size = args.batch_size
    if args.train_dataset_dir:
        config.train_dataset.data_loader.dataset_dir = args.train_dataset_dir
        # The YAML anchor made train_dataset_task.dataset_config the same mapping; after loading
        # they may be separate copies, and the task's copy is the one the trainer reads.
        task = config.get("train_dataset_task")
        if task and task.get("dataset_config") and task.dataset_config.get("data_loader"):
            task.dataset_config.data_loader.dataset_dir = args.train_dataset_dir
    for dotted, value in overrides.items():
        node = config
        keys = dotted.split(".")
        for key in keys[:-1]:
            if key not in node or not isinstance(node[key], dict):
                raise SystemExit(f"train.py: --{dotted}: the config has no section {key!r}")
            node = node[key]
        node[keys[-1]] = value


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    config_path = os.path.abspath(args.config)
    if not os.path.isfile(config_path):
        print(f"train.py: {args.config}: config file not found", file=sys.stderr)
        return 2
    if args.register_path is not None:
        register_path = os.path.abspath(args.register_path)
        # MindFormers' auto-registration reads REGISTER_PATH; the modules must be importable.
        os.environ["REGISTER_PATH"] = register_path
        if register_path not in sys.path:
            sys.path.append(register_path)

    # Imported here, not at the top: --help and argument errors stay instant.
    import cpu_compat
    import mindspore as ms
    from mindformers import MindFormerConfig, Trainer, build_context
    from mindformers.tools.logger import logger
    from mindformers.utils import set_output_path

    config = MindFormerConfig(config_path)
    apply_overrides(config, args, overrides)
    if config.run_mode not in RUN_MODES:
        print(f"train.py: {args.config}: run_mode must be one of {', '.join(RUN_MODES)}, "
              f"got {config.run_mode!r}", file=sys.stderr)
        return 2

    if cpu_compat.targets_cpu(config):
        problem = cpu_compat.cpu_parallel_problem(config)
        if problem:
            print(f"train.py: {args.config}: {problem}", file=sys.stderr)
            return 2
        for change in cpu_compat.fix_config(config):
            logger.info(f"mfctl train: CPU: {change}")

    mode = {0: "GRAPH_MODE", 1: "PYNATIVE_MODE"}.get(config.get("context", {}).get("mode", 0), "GRAPH_MODE")
    logger.info(f"mfctl train: running MindFormers in {mode}, run_mode {config.run_mode}, config {config_path}")
    set_output_path(config.output_dir)
    build_context(config)

    if os.environ.get("MS_ROLE") == "MS_SCHED":
        # msrun's scheduler runs this script too; its work is done inside build_context.
        return 0

    cpu = cpu_compat.is_cpu(ms.get_context("device_target"))
    if cpu or (config.get("runner_wrapper") or {}).get("type") == cpu_compat.CPU_WRAPPER:
        import cpu_train

        cpu_train.register_wrapper()
        logger.info(f"mfctl train: runner_wrapper {cpu_compat.CPU_WRAPPER} registered "
                    "(loss-scale overflow check by IsFinite)")
        if cpu and config.use_parallel:
            routed = cpu_train.route_barrier()
            if routed:
                logger.info("mfctl train: CPU: barrier of %s is mindspore.ops.communication.barrier",
                            ", ".join(routed))

    trainer = Trainer(config)
    if config.run_mode in ("train", "finetune"):
        trainer.train()
    elif config.run_mode == "eval":
        trainer.evaluate(eval_checkpoint=config.load_checkpoint)
    else:
        trainer.predict(predict_checkpoint=config.load_checkpoint, input_data=config.get("input_data"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
