"""Does it fit: plan shows the memory per stage; init, check and launch refuse what cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def hosts(tmp: Path, nodes: int, slots: int = 8) -> Path:
    path = tmp / "hosts.txt"
    path.write_text("".join(f"fit-node{i + 1}.invalid slots={slots}\n" for i in range(nodes)))
    return path


def init(mfctl, tmp: Path, model: str, nodes: int, slots: int = 8, *extra: str):
    return mfctl("init", tmp / "j", "--model", model, "--nodes", hosts(tmp, nodes, slots),
                 "--dataset", "/data/wiki.mindrecord", "--yes", *extra)


def memory_of(mfctl, job: Path) -> dict:
    r = mfctl("plan", "--json", "--dir", job)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["memory"]


def assert_parts_add_up(memory: dict) -> None:
    for stage in memory["stages"]:
        parts = sum(stage[k] for k in ("params_gb", "grads_gb", "optimizer_gb", "activations_gb",
                                       "other_gb"))
        assert parts == pytest.approx(stage["total_gb"], abs=1e-9), stage


@pytest.mark.parametrize("model, nodes, stages", [("llama2-7b", 1, 1), ("llama3-70b", 8, 8)])
def test_published_presets_fit(mfctl, tmp_path: Path, model: str, nodes: int, stages: int) -> None:
    r = init(mfctl, tmp_path, model, nodes)
    assert r.exit_code == 0, r.stderr
    memory = memory_of(mfctl, tmp_path / "j")
    assert memory["fits"] is True
    assert [s["stage"] for s in memory["stages"]] == list(range(stages))
    peak = max(s["total_gb"] for s in memory["stages"])
    assert 0.4 * memory["limit_gb"] <= peak <= memory["limit_gb"]
    assert memory["limit_source"] == "context.max_device_memory"
    assert_parts_add_up(memory)
    table = mfctl("plan", "--dir", tmp_path / "j").stdout
    assert "memory per device, GiB" in table and f"fits: the largest stage ({memory['peak_stage']})" in table


@pytest.mark.parametrize("model, nodes, slots", [
    ("llama3-70b", 1, 8),   # 70B on one node of 8
    ("llama3-70b", 2, 8),   # 70B on two nodes of 8
    ("llama2-7b", 1, 1),    # 7B on one device
])
def test_init_refuses_what_cannot_fit(mfctl, tmp_path: Path, model: str, nodes: int, slots: int) -> None:
    r = init(mfctl, tmp_path, model, nodes, slots)
    assert r.exit_code == 2, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "stage 0 needs ~" in r.stderr and "GiB per device, the devices give" in r.stderr
    assert "--no-fit-check" in r.stderr
    assert not (tmp_path / "j").exists()
    # Created anyway on request: plan then says fits false, with the same figures.
    assert init(mfctl, tmp_path, model, nodes, slots, "--no-fit-check").exit_code == 0
    memory = memory_of(mfctl, tmp_path / "j")
    assert memory["fits"] is False and "refusal" in memory
    assert_parts_add_up(memory)


def test_automatic_layout_picks_one_that_fits(mfctl, tmp_path: Path) -> None:
    # 7B on 4 devices: dp 4 would not fit (less optimizer sharding); the chooser moves on.
    r = init(mfctl, tmp_path, "llama2-7b", 1, 4)
    assert r.exit_code == 0, r.stderr
    plan = json.loads(mfctl("plan", "--json", "--dir", tmp_path / "j").stdout)
    assert plan["memory"]["fits"] is True
    assert plan["parallel"]["data_parallel"] < 4
    assert "would not fit in device memory" in plan["note"]


def test_long_sequence_does_not_fit_and_says_what_would(mfctl, tmp_path: Path) -> None:
    assert init(mfctl, tmp_path, "llama2-7b", 1).exit_code == 0
    spec = tmp_path / "j" / "mfctl.yaml"
    spec.write_text(spec.read_text() + "train:\n  seq_length: 32768\n")
    memory = memory_of(mfctl, tmp_path / "j")
    assert memory["fits"] is False
    assert "with full recompute ~" in memory["refusal"]
    assert "(set recompute_config.recompute: true)" in memory["refusal"]
    r = mfctl("plan", "--dir", tmp_path / "j")
    assert "does not fit:" in r.stdout


def test_launch_and_check_refuse_before_any_connection(mfctl, tmp_path: Path) -> None:
    # The hosts do not exist (.invalid): a refusal that came after connecting would say so.
    assert init(mfctl, tmp_path, "llama3-70b", 1, 8, "--no-fit-check").exit_code == 0
    for command in ("launch", "check"):
        r = mfctl(command, "--dir", tmp_path / "j")
        assert r.exit_code == 2, (command, r.stdout, r.stderr)
        assert "stage 0 needs ~" in r.stderr and "the devices give 52.5 GiB" in r.stderr
        assert "connecting" not in r.stderr and "unreachable" not in r.stderr
    r = mfctl("launch", "--dir", tmp_path / "j", "--dry-run", "--json", "--no-fit-check")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["fit_check"].startswith("skipped (--no-fit-check): does not fit: stage 0")


def test_the_record_says_the_check_was_skipped(tmp_path: Path) -> None:
    from mfctl.jobs.create import create_job
    from mfctl.jobs.launch import fit_skipped_before, load, record_launch
    from mfctl.records.store import JobStore
    from mfctl.remote.connect import SshOptions

    create_job(tmp_path / "j", model="llama3-70b", model_config=None, nodes=hosts(tmp_path, 1),
               devices_per_node=8, dataset="/d", fit_check=False)
    job, plan = load(tmp_path / "j", None, SshOptions(), None, None)
    store = JobStore(tmp_path / "home")
    skipped = record_launch(store, job, plan, "j-1", SshOptions(), None,
                            "skipped (--no-fit-check): does not fit: stage 0 ~179 GiB of 52.5 GiB")
    assert [(k, m[:7]) for _, k, m in store.events(skipped.id)] == [("fit_check", "skipped")]
    # launch --resume and --supervise restarts read this to skip the check again.
    assert fit_skipped_before(store, skipped)
    checked = record_launch(store, job, plan, "j-2", SshOptions(), None, "fits: stage 0 ~37 GiB")
    assert not fit_skipped_before(store, checked)


# --------------------------------------------------------------------------- plan --dryrun

def dryrun_job(mfctl, tmp: Path, setup: str | None) -> Path:
    from tests.dryrun_standin import STANDIN_PYTHON

    r = mfctl("init", tmp / "j", "--model", "llama3-70b", "--devices-per-node", "64", "--dataset", "/d",
              "--python", STANDIN_PYTHON, "--yes")
    assert r.exit_code == 0, r.stderr
    if setup is not None:
        spec = tmp / "j" / "mfctl.yaml"
        spec.write_text(spec.read_text() + yaml.safe_dump({"setup": setup}, width=10**6))
    return tmp / "j"


def test_plan_dryrun_shows_each_stage_beside_the_estimate(mfctl, tmp_path: Path) -> None:
    from tests.dryrun_standin import recorded_mib, standin_setup

    job = dryrun_job(mfctl, tmp_path, standin_setup(64, 8))
    r = mfctl("plan", "--dryrun", "--json", "--dir", job)
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    stages = out["dryrun"]["stages"]
    assert [(s["stage"], s["rank"], s["rc"]) for s in stages] == [(s, 8 * s, 0) for s in range(8)]
    for s in stages:
        assert s["actual_peak_mib"] == recorded_mib(s["stage"])
        assert s["peak_gb"] == round(recorded_mib(s["stage"]) / 1024, 2)
    assert len(out["memory"]["stages"]) == 8
    r = mfctl("plan", "--dryrun", "--dir", job)
    assert "dryrun peak" in r.stdout
    row0 = next(line for line in r.stdout.splitlines() if line.startswith(" 0 "))
    assert row0.rstrip().endswith(f"{recorded_mib(0) / 1024:.1f}")


def test_plan_dryrun_without_cann_says_so_in_one_line(mfctl, tmp_path: Path) -> None:
    job = dryrun_job(mfctl, tmp_path, None)
    r = mfctl("plan", "--dryrun", "--dir", job)
    assert r.exit_code == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("note: dryrun")]
    assert len(lines) == 1 and "no CANN found" in lines[0], r.stderr
    assert "fits: the largest stage" in r.stdout  # the estimate is still shown


def own_config(mfctl, tmp: Path, edit) -> Path:
    """A MindFormers YAML of the user's own: llama2-7b's rendered config, edited."""
    (tmp / "src").mkdir()
    assert init(mfctl, tmp / "src", "llama2-7b", 1).exit_code == 0
    assert mfctl("render", "--dir", tmp / "src" / "j").exit_code == 0
    data = yaml.safe_load((tmp / "src" / "j" / "rendered" / "config.yaml").read_text())
    edit(data)
    path = tmp / "own.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_own_config_without_max_device_memory_assumes_64_gb_and_says_so(mfctl, tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        del data["context"]["max_device_memory"]
        data["optimizer"]["type"] = "Sophia"
    path = own_config(mfctl, tmp_path, edit)
    r = mfctl("init", tmp_path / "j", "--model", "llama2-7b", "--model-config", path, "--nodes",
              hosts(tmp_path, 1), "--dataset", "/d", "--yes")
    assert r.exit_code == 0, r.stderr
    memory = memory_of(mfctl, tmp_path / "j")
    assert memory["limit_gb"] == 64 and memory["limit_source"] == "assumed"
    assert any("assumed 64 GB" in a for a in memory["assumptions"])
    assert any("optimizer Sophia" in u for u in memory["unaccounted"])
    r = mfctl("plan", "--dir", tmp_path / "j")
    assert "could not account for: optimizer Sophia" in r.stderr.replace("\n", " ")


def test_own_config_without_model_dimensions_names_them(mfctl, tmp_path: Path) -> None:
    path = own_config(mfctl, tmp_path, lambda data: data["model"]["model_config"].pop("hidden_size"))
    r = mfctl("init", tmp_path / "j", "--model", "llama2-7b", "--model-config", path, "--nodes",
              hosts(tmp_path, 1), "--dataset", "/d", "--yes")
    assert r.exit_code == 0, r.stderr
    memory = memory_of(mfctl, tmp_path / "j")
    assert memory["fits"] is None and memory["stages"] == []
    assert memory["unaccounted"] == ["model.model_config.hidden_size is not in the config: no estimate"]
    r = mfctl("launch", "--dir", tmp_path / "j", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["fit_check"] == ("not checked: model.model_config.hidden_size missing "
                                                 "from the config")


def test_plan_dryrun_sources_the_jobs_cann_set_env(mfctl, tmp_path: Path) -> None:
    from tests.dryrun_standin import recorded_mib, standin_setup

    set_env = tmp_path / "cann" / "set_env.sh"
    set_env.parent.mkdir()
    set_env.write_text("export ASCEND_HOME_PATH=/\n")
    job = dryrun_job(mfctl, tmp_path, standin_setup(64, 8, cann=False))
    spec = job / "mfctl.yaml"
    spec.write_text(spec.read_text() + yaml.safe_dump({"ascend": {"set_env": [str(set_env)]}}))
    out = json.loads(mfctl("plan", "--dryrun", "--json", "--dir", job).stdout)
    assert [s["actual_peak_mib"] for s in out["dryrun"]["stages"]] == [recorded_mib(s) for s in range(8)]
    set_env.unlink()
    out = json.loads(mfctl("plan", "--dryrun", "--json", "--dir", job).stdout)
    assert out["dryrun"]["skipped"] == (f"localhost: ascend.set_env {set_env} is not there (or not "
                                        "readable); DryRun was not run")


def test_cpu_job_has_no_device_memory_to_check(mfctl, tmp_path: Path) -> None:
    assert mfctl("init", tmp_path / "j", "--model", "tiny-llama", "--dataset", "/d", "--yes").exit_code == 0
    assert json.loads(mfctl("plan", "--json", "--dir", tmp_path / "j").stdout)["memory"] is None
    assert "memory: not estimated: CPU training has no device memory limit" in mfctl(
        "plan", "--dir", tmp_path / "j").stdout
    r = mfctl("launch", "--dir", tmp_path / "j", "--dry-run", "--json")
    assert json.loads(r.stdout)["fit_check"] == "not checked: CPU training has no device memory limit"


def test_without_max_device_memory_the_preflights_hbm_is_the_limit(mfctl, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mfctl.errors import BadInput
    from mfctl.jobs.fit import gate_after_preflight, launch_gate, preflight_hbm_gb
    from mfctl.jobs.jobdir import load_job

    path = own_config(mfctl, tmp_path, lambda data: data["context"].pop("max_device_memory"))
    r = mfctl("init", tmp_path / "j", "--model", "llama2-7b", "--model-config", path, "--nodes",
              hosts(tmp_path, 2), "--dataset", "/d", "--yes")
    assert r.exit_code == 0, r.stderr
    job = load_job(tmp_path / "j")
    fit = launch_gate(job, True)
    assert fit.startswith("fits: ") and "of 64 GiB (assumed)" in fit

    def node(*hbm_mb: int) -> SimpleNamespace:  # a NodeCheck's npu facts, as check --json gives them
        return SimpleNamespace(npu={"chips": [{"hbm_total_mb": mb} for mb in hbm_mb]})

    assert preflight_hbm_gb([SimpleNamespace(npu=None), SimpleNamespace()]) is None
    assert preflight_hbm_gb([node(65536, 65536), node(32768)]) == 32
    # 64 GB devices: still fits, now against what the nodes have.
    assert "of 64 GiB (the devices' HBM (preflight))" in gate_after_preflight(
        job, [node(65536), node(65536)], fit, True)
    # One node has 32 GB devices: refused before anything is pushed.
    with pytest.raises(BadInput, match="the devices give 32 GiB"):
        gate_after_preflight(job, [node(65536), node(32768)], fit, True)
    skipped = gate_after_preflight(job, [node(32768)], fit, False)
    assert skipped.startswith("skipped (--no-fit-check): does not fit")


def test_plan_dryrun_unknown_node_is_refused(mfctl, tmp_path: Path) -> None:
    job = dryrun_job(mfctl, tmp_path, None)
    r = mfctl("plan", "--dryrun", "--node", "node9", "--dir", job)
    assert r.exit_code == 2
    assert "--node node9: not a node of this job (hosts: localhost, or a node rank 0..0)" in r.stderr
