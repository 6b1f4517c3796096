from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

# Layouts of 70B on fewer than 64 devices do not fit in device memory: these tests are about
# rendering and planning, so they create the job anyway (tests/cli/test_memory.py checks the refusal).
INIT_70B = ["--model", "llama3-70b", "--devices-per-node", "8",
            "--dataset", "/data/wiki4096.mindrecord", "--yes", "--no-fit-check"]


def hosts(tmp: Path, n: int, extra: str = "") -> Path:
    path = tmp / "hosts.txt"
    path.write_text("".join(f"node{i + 1}{extra}\n" for i in range(n)))
    return path


def test_init_plan_json_8x8(mfctl, tmp_path: Path) -> None:
    r = mfctl("init", tmp_path / "j70", "--nodes", hosts(tmp_path, 8), *INIT_70B)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "j70" / "mfctl.yaml").is_file()
    assert (tmp_path / "j70" / "hosts.txt").read_text() == (tmp_path / "hosts.txt").read_text()
    r = mfctl("plan", "--json", cwd=tmp_path / "j70")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["world_size"] == 64
    assert plan["master_addr"] == "node1"
    assert plan["master_port"] == 8118
    assert plan["parallel"] == {"data_parallel": 1, "model_parallel": 8, "pipeline_stage": 8,
                                "micro_batch_num": 256}
    assert [n["node_rank"] for n in plan["nodes"]] == list(range(8))
    assert [n["host"] for n in plan["nodes"]] == [f"node{i + 1}" for i in range(8)]
    assert plan["nodes"][7]["ranks"] == list(range(56, 64))
    for node in plan["nodes"]:
        argv = shlex.split(node["command"])
        assert argv[:1] == ["msrun"] and f"--node_rank {node['node_rank']} " in node["command"]


def test_plan_mindformers_launcher(mfctl, tmp_path: Path) -> None:
    r = mfctl("init", tmp_path / "j", "--nodes", hosts(tmp_path, 8), *INIT_70B,
              "--launcher", "mindformers", "--mindformers-home", "/opt/mindformers")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(mfctl("plan", "--json", "--dir", tmp_path / "j").stdout)
    for node in plan["nodes"]:
        argv = shlex.split(node["command"])
        # From the checkout by absolute path, run in the node's job dir, JOIN True.
        assert argv[:2] == ["bash", "$MF_HOME/scripts/msrun_launcher.sh"]
        assert argv[2].startswith("$MF_HOME/run_mindformer.py ") and "--use_parallel True" in argv[2]
        assert argv[3:] == ["64", "8", "node1", "8118", str(node["node_rank"]), "output/msrun_log",
                            "True", "600"]
        assert node["log_dir"] == "output/msrun_log" and node["job_dir"] == "mfctl-jobs/j"


def test_plan_table_and_nodes_override(mfctl, tmp_path: Path) -> None:
    mfctl("init", tmp_path / "j", "--nodes", hosts(tmp_path, 8), *INIT_70B)
    other = tmp_path / "two.txt"
    other.write_text("a slots=8\nb slots=8\n")
    r = mfctl("plan", "--dir", tmp_path / "j", "--nodes", other)
    assert r.exit_code == 0, r.stderr
    assert "world size 16" in r.stdout and "NODE_RANK" in r.stdout
    assert "layout for 16 devices" in r.stderr


def test_render_writes_loadable_config_and_scripts(mfctl, tmp_path: Path) -> None:
    mfctl("init", tmp_path / "j", "--nodes", hosts(tmp_path, 2, " slots=8"), *INIT_70B)
    r = mfctl("render", cwd=tmp_path / "j")
    assert r.exit_code == 0, r.stderr
    printed = r.stdout.split()
    config = tmp_path / "j" / "rendered" / "config.yaml"
    assert str(config) in printed
    assert all(Path(p).exists() for p in printed)
    data = yaml.safe_load(config.read_text())
    published_keys = {"seed", "output_dir", "load_checkpoint", "src_strategy_path_or_dir",
                      "auto_trans_ckpt", "only_save_strategy", "resume_training", "run_mode", "trainer",
                      "runner_config", "optimizer", "lr_schedule", "train_dataset", "train_dataset_task",
                      "do_eval", "use_parallel", "parallel", "parallel_config",
                      "micro_batch_interleave_num", "recompute_config", "callbacks", "context", "model",
                      "runner_wrapper", "profile"}
    assert published_keys <= set(data)
    assert data["parallel_config"]["model_parallel"] == 8
    assert data["parallel_config"]["pipeline_stage"] == 2  # 16 devices: layout chosen for them
    assert data["model"]["model_config"]["n_kv_heads"] == 8
    assert data["train_dataset"]["data_loader"]["dataset_dir"] == "/data/wiki4096.mindrecord"
    script = (tmp_path / "j" / "rendered" / "launch-node1.sh").read_text()
    assert "--node_rank 1 " in script and "MFCTL_JOB=" in script


@pytest.mark.parametrize("preset", ["llama2-7b", "llama3-70b", "tiny-llama"])
def test_rendered_config_loads_in_mindformers(mfctl, tmp_path: Path, preset: str, monkeypatch) -> None:
    mindformers = pytest.importorskip("mindformers", reason="mindformers (the train extra) not installed")
    r = mfctl("init", tmp_path / "j", "--model", preset, "--dataset", "/d/x.mindrecord", "--yes",
              "--no-fit-check")
    assert r.exit_code == 0, r.stderr
    assert mfctl("render", cwd=tmp_path / "j").exit_code == 0
    config = mindformers.MindFormerConfig(str(tmp_path / "j" / "rendered" / "config.yaml"))
    assert config.model.model_config.type == "LlamaConfig"
    assert config.train_dataset.data_loader.dataset_dir == "/d/x.mindrecord"


# ---- bad input: one line naming the place, exit 2, nothing written

BAD_HOSTS = [
    ("", "no nodes listed"),
    ("a\nb\na\n", "hosts.txt:3: host 'a' is listed twice (lines 1 and 3)"),
    ("a slots=eight\n", "hosts.txt:1: slots must be a positive integer, got 'eight'"),
    ("a slots=8\nb slots=4\n", "hosts.txt:2: 'b' has slots=4 but line 1 has slots=8"),
    ("a b c\n", "hosts.txt:1: cannot read 'a b c'"),
]


@pytest.mark.parametrize("text, message", BAD_HOSTS)
def test_init_bad_hosts(mfctl, tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "hosts.txt").write_text(text)
    r = mfctl("init", tmp_path / "j", "--nodes", tmp_path / "hosts.txt", *INIT_70B)
    assert r.exit_code == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt5"], "unknown model preset 'gpt5'"),
    (["--dp", "2", "--mp", "8", "--pp", "8"], "= 128, but the cluster has 8 devices"),
    (["--mp", "3"], "mp 3"),
    (["--launcher", "mindformers"], "--launcher mindformers needs --mindformers-home"),
    (["--launcher", "slurm"], "--launcher must be 'msrun' or 'mindformers'"),
    (["--master-port", "80"], "master_port"),
    (["--name", "bad name"], "job name 'bad name'"),
    (["--nodes", "missing.txt"], "missing.txt: hosts file not found"),
])
def test_init_bad_options(mfctl, tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--model": "llama3-70b", "--dataset": "/d", "--devices-per-node": "8"}
    argv = []
    for key, value in base.items():
        if key not in args:
            argv += [key, value]
    r = mfctl("init", tmp_path / "j", *argv, *args, "--yes", cwd=tmp_path)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "j").exists()


def test_init_refuses_existing_job(mfctl, tmp_path: Path) -> None:
    assert mfctl("init", tmp_path / "j", *INIT_70B).exit_code == 0
    before = (tmp_path / "j" / "mfctl.yaml").read_text()
    r = mfctl("init", tmp_path / "j", *INIT_70B)
    assert r.exit_code == 2 and "a job already exists here" in r.stderr
    assert (tmp_path / "j" / "mfctl.yaml").read_text() == before


@pytest.mark.parametrize("edit, message", [
    ("master_port: 8118", "mfctl.yaml:{line}: master_port Input should be less than or equal to 65535"),
    ("parallel:", "mfctl.yaml:{line}: parallel.pipline_stage is not a known setting"),
    ("launcher: msrun", "mfctl.yaml:{line}: launcher Input should be 'msrun' or 'mindformers'"),
    ("model: llama3-70b", "mfctl.yaml:{line}: unknown model preset 'llama4'"),
    ("dataset: /d", "mfctl.yaml:{line}: not valid YAML"),
])
def test_plan_bad_spec_names_line(mfctl, tmp_path: Path, edit: str, message: str) -> None:
    assert mfctl("init", tmp_path / "j", *INIT_70B[:4], "--dataset", "/d", "--yes", "--mp", "8",
                 "--pp", "1", "--no-fit-check").exit_code == 0
    spec = tmp_path / "j" / "mfctl.yaml"
    lines = spec.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(edit.split(":")[0] + ":"))
    replacement = {
        "master_port: 8118": "master_port: 99999",
        "parallel:": "parallel:\n  pipline_stage: 2",
        "launcher: msrun": "launcher: slurm",
        "model: llama3-70b": "model: llama4",
        "dataset: /d": "dataset: [unclosed",
    }[edit]
    lines[index] = replacement
    spec.write_text("\n".join(lines) + "\n")
    expected_line = index + 2 if edit == "parallel:" else index + 1
    r = mfctl("plan", "--dir", tmp_path / "j")
    assert r.exit_code == 2, r.stdout
    assert message.format(line=expected_line) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_plan_without_job(mfctl, tmp_path: Path) -> None:
    r = mfctl("plan", "--dir", tmp_path)
    assert r.exit_code == 2 and "no job here; create one with 'mfctl init DIR'" in r.stderr


def test_render_bad_nodes_override_writes_nothing(mfctl, tmp_path: Path) -> None:
    mfctl("init", tmp_path / "j", *INIT_70B)
    (tmp_path / "bad.txt").write_text("a slots=8\na slots=8\n")
    r = mfctl("render", "--dir", tmp_path / "j", "--nodes", tmp_path / "bad.txt")
    assert r.exit_code == 2 and "bad.txt:2: host 'a' is listed twice" in r.stderr
    assert not (tmp_path / "j" / "rendered").exists()


def test_help_on_every_command(mfctl) -> None:
    for cmd in ["init", "render", "plan", "launch", "check", "status", "stop", "logs", "jobs"]:
        r = mfctl(cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.stdout and "Example" in r.stdout, cmd


def test_init_without_yes_asks_for_what_is_missing(mfctl, tmp_path: Path, monkeypatch) -> None:
    import io

    hosts(tmp_path, 2, " slots=8")
    # model preset, hosts file, devices per node (default from slots shown), dataset
    monkeypatch.setattr("sys.stdin", io.StringIO(f"llama2-7b\n{tmp_path / 'hosts.txt'}\n8\n/data/w.mindrecord\n"))
    r = mfctl("init", tmp_path / "asked")
    assert r.exit_code == 0, r.stderr
    assert "Model preset" in r.stdout and "Dataset" in r.stdout
    plan = json.loads(mfctl("plan", "--json", "--dir", tmp_path / "asked").stdout)
    assert plan["world_size"] == 16 and plan["parallel"]["data_parallel"] == 16
    spec = yaml.safe_load((tmp_path / "asked" / "mfctl.yaml").read_text())
    assert spec["model"] == "llama2-7b" and spec["dataset"] == "/data/w.mindrecord"


def test_init_defaults_when_enter_is_pressed(mfctl, tmp_path: Path, monkeypatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("\n\n\n\n"))
    r = mfctl("init", tmp_path / "defaults")
    assert r.exit_code == 0, r.stderr
    spec = yaml.safe_load((tmp_path / "defaults" / "mfctl.yaml").read_text())
    assert spec["model"] == "tiny-llama" and spec["hosts"] == "localhost" and spec["devices_per_node"] == 2
