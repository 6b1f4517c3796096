"""``mfctl init``: validate everything first, then write the job directory in one go."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from mfctl.cluster.hostfile import parse_hostfile
from mfctl.errors import BadInput
from mfctl.jobs.fit import config_of, require_fit
from mfctl.jobs.jobdir import Job, get_preset, load_job, read_text, resolve_layout
from mfctl.jobspec.ascend import parse_devices
from mfctl.jobspec.schema import SPEC_FILE, JobSpec, ParallelSpec, dump_spec
from mfctl.render import check_own_config


def create_job(
    directory: Path,
    *,
    model: str | None,
    model_config: Path | None,
    nodes: Path | None,
    devices_per_node: int | None,
    dataset: str | None,
    name: str | None = None,
    devices: str | None = None,
    launcher: str = "msrun",
    mindformers_home: str | None = None,
    dp: int | None = None,
    mp: int | None = None,
    pp: int | None = None,
    micro_batch_num: int | None = None,
    master_port: int = 8118,
    master_addr: str | None = None,
    python: str = "python3",
    workdir: str = "mfctl-jobs",
    force: bool = False,
    train: dict | None = None,
    slurm: dict | None = None,
    fit_check: bool = True,
) -> Job:
    """``slurm``: the Slurm keys (partition, node_count, ...) for a job Slurm runs (no hosts file).
    ``fit_check``: refuse a layout whose largest pipeline stage does not fit in device memory."""
    spec_path = directory / SPEC_FILE
    if spec_path.exists() and not force:
        raise BadInput(f"{spec_path}: a job already exists here; pick another directory or pass --force")
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"{directory}: exists and is not a directory; pick another name for the job")
    if model is None and model_config is None:
        raise BadInput("--model is required with --yes: choose llama2-7b, llama3-70b or tiny-llama")
    preset_name = model or "llama2-7b"
    preset = get_preset(preset_name, "--model")
    if dataset is None:
        raise BadInput("--dataset is required with --yes: the MindRecord path on the nodes")
    for flag, value in (("--dp", dp), ("--mp", mp), ("--pp", pp), ("--micro-batch-num", micro_batch_num),
                        ("--devices-per-node", devices_per_node)):
        if value is not None and value < 1:
            raise BadInput(f"{flag} must be a positive integer, got {value}")
    for key, flag in (("batch_size", "--batch-size"), ("gradient_accumulation_steps", "--grad-accum")):
        value = (train or {}).get(key)
        if value is not None and value < 1:
            raise BadInput(f"{flag} must be a positive integer, got {value}")
    device_list = None
    if devices is not None:
        try:
            device_list = parse_devices(devices)
        except ValueError as exc:
            raise BadInput(f"--devices {exc}") from None
        if devices_per_node is not None and devices_per_node != len(device_list):
            raise BadInput(f"--devices lists {len(device_list)} device(s) but --devices-per-node is "
                           f"{devices_per_node}; give one of them")
        devices_per_node = len(device_list)
    if launcher not in ("msrun", "mindformers"):
        raise BadInput(f"--launcher must be 'msrun' or 'mindformers', got {launcher!r}")
    if launcher == "mindformers" and not mindformers_home:
        raise BadInput("--launcher mindformers needs --mindformers-home: the MindFormers source dir on the nodes")

    hosts_text = None
    slots = None
    if slurm is not None and nodes is not None:
        raise BadInput("--nodes and --scheduler slurm: Slurm chooses the nodes; give --node-count instead")
    if nodes is not None:
        hosts_text = read_text(nodes, "hosts file")
        entries = parse_hostfile(hosts_text, str(nodes))
        slots = entries[0].slots
        if slots is not None and devices_per_node is not None and slots != devices_per_node:
            given = (f"--devices lists {devices_per_node} device(s)" if device_list is not None
                     else f"--devices-per-node is {devices_per_node}")
            raise BadInput(f"{nodes}:{entries[0].line}: slots={slots} but {given}; make them agree")
    own_text = None
    if model_config is not None:
        own_text = read_text(model_config, "model config")
        check_own_config(own_text, str(model_config))  # before anything is written

    job_name = name or directory.resolve().name
    try:
        spec = JobSpec(
            name=job_name,
            model=preset_name,
            model_config=("model.yaml" if model_config is not None else None),
            hosts="hosts.txt" if nodes is not None else "localhost",
            **({"scheduler": "slurm", "slurm": slurm} if slurm is not None else {}),
            devices_per_node=devices_per_node or slots or preset.devices_per_node,
            devices=device_list,
            parallel=ParallelSpec(data_parallel=dp, model_parallel=mp, pipeline_stage=pp,
                                  micro_batch_num=micro_batch_num),
            dataset=dataset,
            master_port=master_port,
            master_addr=master_addr,
            launcher=launcher,
            mindformers_home=mindformers_home,
            python=python,
            workdir=workdir,
            **({"train": train} if train else {}),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{field}: {first['msg'].removeprefix('Value error, ')}") from None

    flags = "--dp/--mp/--pp/--micro-batch-num"
    node_count = len(parse_hostfile(hosts_text, str(nodes))) if hosts_text else 1
    if spec.slurm is not None:
        node_count = spec.slurm.node_count
    world = spec.devices_per_node * node_count
    layout, _, batch = resolve_layout(spec, preset, world, flags, own_text)
    if fit_check:
        require_fit(config_of(spec, preset, layout, world, own_text, batch),
                    f"layout dp {layout.data_parallel} mp {layout.model_parallel} pp "
                    f"{layout.pipeline_stage} on {world} devices")

    directory.mkdir(parents=True, exist_ok=True)
    if hosts_text is not None:
        (directory / "hosts.txt").write_text(hosts_text, encoding="utf-8")
    if own_text is not None:
        (directory / "model.yaml").write_text(own_text, encoding="utf-8")
    spec_path.write_text(
        "# mfctl job spec: edit and run 'mfctl plan' to check it. Paths are on the nodes unless noted.\n"
        + dump_spec(spec), encoding="utf-8")
    return load_job(directory)
