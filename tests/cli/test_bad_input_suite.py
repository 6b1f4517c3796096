"""Bad input, table-driven: every case exits 2 with ONE stderr line and leaves no trace.

The README's contract: "Errors are one line naming the file and line, host or rank, and what to
do; bad input exits 2 and starts nothing". Each case names the place it expects in the message
(``h.txt:1:``, ``mfctl.yaml:<line of the key>:``, ``--fanout``, ``--rank 5``) and a piece of the
advice, then checks that the job directory (and every file the case set up) is byte-for-byte as
before and that the job database holds no new job. Nodes are ``*.invalid`` names, which never
resolve: a command that contacted a node would fail with exit 1 ("unreachable"), not 2, and would
print its "connecting" stage first, so the single exit-2 line also shows nothing was contacted.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

NODES = "n1.invalid\nn2.invalid\n"


@dataclass
class Ctx:
    """What a case's setup can touch: the test's tmp dir, the job dir, a trained tokenizer."""

    tmp: Path
    job: Path
    tok: Path | None

    @property
    def spec(self) -> Path:
        return self.job / "mfctl.yaml"


Setup = Callable[[Ctx], None]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    place: str  # formatted with tmp, job, tok and L (line of each key in mfctl.yaml)
    hint: str
    setup: tuple[Setup, ...] = ()
    cwd: str = "{job}"
    tokenizer: bool = False


def case(id: str, argv: str | list[str], place: str, hint: str, *setup: Setup, cwd: str = "{job}",
         tokenizer: bool = False) -> object:
    args = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    return pytest.param(Case(id, args, place, hint, setup, cwd, tokenizer), id=id)


# --------------------------------------------------------------------------- setup helpers

def write(name: str, text: str | bytes) -> Setup:
    def do(c: Ctx) -> None:
        path = c.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return do


def hosts(text: str | bytes) -> Setup:
    return write("h.txt", text)


def spec_set(key: str, value: object) -> Setup:
    """Replace a top-level key of mfctl.yaml (or add it at the end), value as YAML."""
    def do(c: Ctx) -> None:
        rendered = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()
        rendered = rendered[1:-1]  # "{key: value}" -> "key: value"
        lines = c.spec.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"{key}:"):
                lines[i] = rendered
                break
        else:
            lines.append(rendered)
        c.spec.write_text("\n".join(lines) + "\n")
    return do


def spec_append(text: str) -> Setup:
    def do(c: Ctx) -> None:
        c.spec.write_text(c.spec.read_text() + text)
    return do


def spec_drop(key: str) -> Setup:
    def do(c: Ctx) -> None:
        c.spec.write_text("".join(line for line in c.spec.read_text().splitlines(keepends=True)
                                  if not line.startswith(f"{key}:")))
    return do


def spec_text(text: str) -> Setup:
    def do(c: Ctx) -> None:
        c.spec.write_text(text)
    return do


def job_file(name: str, text: str) -> Setup:
    def do(c: Ctx) -> None:
        (c.job / name).write_text(text)
    return do


def recorded_job(state: str = "finished") -> Setup:
    """A launched job in the database: 2 nodes x 1 device, ranks 0 and 1, unreachable hosts."""
    def do(c: Ctx) -> None:
        from mfctl.cluster.plan import LaunchPlan
        from mfctl.records.record import JobRecord
        from mfctl.records.store import JobStore

        nodes = [{"host": h, "node_rank": k, "local_worker_num": 1, "ranks": [k],
                  "command": "msrun ...", "job_dir": "mfctl-jobs/job", "log_dir": "output/msrun_log"}
                 for k, h in enumerate(["n1.invalid", "n2.invalid"])]
        store = JobStore()
        store.add(JobRecord(
            id="job-20260101-000000", name="job", job_dir=str(c.job), transport="ssh",
            spec={"name": "job", "model": "tiny-llama", "env": {}},
            plan=LaunchPlan.from_json({
                "job_name": "job", "world_size": 2, "master_addr": "n1.invalid", "master_port": 8118,
                "launcher": "msrun", "nodes": nodes,
                "parallel": {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 1,
                             "micro_batch_num": 1}}),
            hosts=[{"host": h, "user": None, "port": None, "slots": None, "line": k + 1}
                   for k, h in enumerate(["n1.invalid", "n2.invalid"])],
            state=state, created_at=time.time()))
        store.close()
    return do


OWN_OK = "model:\n  model_config:\n    type: LlamaConfig\n"

# --------------------------------------------------------------------------- the cases

HOSTS_CASES = [
    case("hosts-port-out-of-range", "launch --nodes {tmp}/h.txt", "h.txt:1:", "from 1 to 65535",
         hosts("n1.invalid:70000\n")),
    case("hosts-port-not-a-number", "check --nodes {tmp}/h.txt", "h.txt:2:", "port must be a number",
         hosts("n1.invalid\nn2.invalid:ssh\n")),
    case("hosts-slots-zero", "render --nodes {tmp}/h.txt", "h.txt:1:", "positive integer",
         hosts("n1.invalid slots=0\n")),
    case("hosts-unknown-option", "plan --nodes {tmp}/h.txt", "h.txt:1:", "only 'slots=N' may follow",
         hosts("n1.invalid gpus=1\n")),
    case("hosts-localhost-among-nodes", "launch --nodes {tmp}/h.txt", "h.txt:2:", "real address",
         hosts("n1.invalid\nlocalhost\n")),
    case("hosts-only-comments", "check --nodes {tmp}/h.txt", "h.txt:", "write one host per line",
         hosts("# nodes\n\n   # none yet\n")),
    case("hosts-shell-metacharacters", "launch --nodes {tmp}/h.txt", "h.txt:1:", "one node per line",
         hosts("n1.invalid;touch /tmp/x\n")),
    case("hosts-user-metacharacters", "launch --dry-run --nodes {tmp}/h.txt", "h.txt:1:",
         "'user@host'", hosts("x$(id)@n1.invalid\n")),
    case("hosts-duplicate-host-other-user", "launch --nodes {tmp}/h.txt", "h.txt:3:", "list each node once",
         hosts("a@n1.invalid\nn2.invalid\nb@N1.INVALID\n")),
    case("hosts-slots-missing-on-a-line", "check --nodes {tmp}/h.txt", "h.txt:2:", "same slots=N",
         hosts("n1.invalid slots=1\nn2.invalid\n")),
    case("hosts-slots-disagree-with-spec", "launch --nodes {tmp}/h.txt", "mfctl.yaml:{L[devices_per_node]}",
         "make them agree", hosts("n1.invalid slots=4\nn2.invalid slots=4\n")),
    case("hosts-file-is-a-directory", "plan --nodes {tmp}", "{tmp}: hosts file is a directory",
         "expected a file"),
    case("hosts-file-not-utf8", "launch --dry-run --nodes {tmp}/h.txt", "h.txt: hosts file",
         "not UTF-8", hosts(b"n1.invalid\n\xff\xfe\n")),
    case("hosts-file-of-spec-missing", "launch", "gone.txt: hosts file not found", "check the path",
         spec_set("hosts", "gone.txt")),
]

SPEC_CASES = [
    case("spec-not-a-mapping", "launch", "mfctl.yaml:1:", "mfctl init", spec_text("- name\n- model\n")),
    case("spec-empty", "check", "mfctl.yaml:1:", "mfctl init", spec_text("")),
    case("spec-required-key-missing", "launch --dry-run", "mfctl.yaml:{L[name]}: dataset", "add a 'dataset:' line",
         spec_drop("dataset")),
    case("spec-bad-indentation", "check", "mfctl.yaml:{L[bad]}: not valid YAML", "fix the syntax",
         spec_append("train:\n  epochs: 1\n bad: 2\n")),
    case("spec-duplicate-key", "launch", "mfctl.yaml:{L[dataset]}: dataset is set twice", "keep one",
         spec_append("dataset: /data/other.mindrecord\n")),
    case("spec-unknown-key", "check", "mfctl.yaml:{L[trian]}: trian", "is not a known setting",
         spec_append("trian: {epochs: 1}\n")),
    case("spec-env-name-invalid", "launch", "mfctl.yaml:{L[env]}: env", "use A-Z, 0-9, _",
         spec_set("env", {"BAD-NAME": "x"})),
    case("spec-env-name-reserved", "check", "mfctl.yaml:{L[env]}: env", "prefix is reserved",
         spec_set("env", {"MFCTL_JOB": "x"})),
    case("spec-env-value-not-a-string", "launch", "mfctl.yaml:{L[env]}: env.A", "quote the value",
         spec_set("env", {"A": [1, 2]})),
    case("spec-python-with-space", "launch", "mfctl.yaml:{L[python]}: python", "use 'setup'",
         spec_set("python", "/opt/py 3/bin/python")),
    case("spec-seq-length-too-small", "plan", "mfctl.yaml:{L[train]}: train.seq_length",
         "greater than or equal to 8", spec_set("train", {"seq_length": 4})),
    case("spec-cluster-timeout-too-small", "launch", "mfctl.yaml:{L[cluster_timeout]}: cluster_timeout",
         "greater than or equal to 10", spec_set("cluster_timeout", 5)),
    case("spec-master-port-privileged", "check", "mfctl.yaml:{L[master_port]}: master_port",
         "greater than or equal to 1024", spec_set("master_port", 80)),
    case("spec-layout-does-not-fit", "launch", "mfctl.yaml:{L[parallel]}: parallel layout",
         "try --dp 2 --mp 1 --pp 1", spec_set("parallel", {"data_parallel": 3})),
    case("spec-cpu-preset-model-parallel", "launch --dry-run", "mfctl.yaml:{L[parallel]}:",
         "use --dp 2 --mp 1 --pp 1", spec_set("parallel", {"data_parallel": 1, "model_parallel": 2})),
    case("spec-parallel-zero", "render", "mfctl.yaml:{L[parallel]}: parallel.pipeline_stage",
         "greater than or equal to 1", spec_set("parallel", {"pipeline_stage": 0})),
    case("spec-name-with-slash", "launch", "mfctl.yaml:{L[name]}: name", "no spaces or slashes",
         spec_set("name", "../evil")),
    case("spec-unknown-preset", "check", "mfctl.yaml:{L[model]}: unknown model preset", "choose one of",
         spec_set("model", "gpt-5")),
    case("spec-output-dir-absolute", "launch", "mfctl.yaml:{L[output_dir]}: output_dir",
         "inside the node job dir", spec_set("output_dir", "/var/out")),
    case("spec-output-dir-escapes-job-dir", "plan", "mfctl.yaml:{L[output_dir]}: output_dir",
         "inside the node job dir", spec_set("output_dir", "out/../../x")),
    case("spec-mindformers-without-home", "launch", "mfctl.yaml:{L[launcher]}: launcher mindformers",
         "set it or use launcher msrun", spec_set("launcher", "mindformers")),
    case("spec-mindformers-dataset-with-spaces", "launch --dry-run", "dataset '/data/my data'",
         "use a plain path", spec_set("launcher", "mindformers"), spec_set("mindformers_home", "/opt/mf"),
         spec_set("dataset", "/data/my data")),
    case("spec-launcher-unknown", "check", "mfctl.yaml:{L[launcher]}: launcher", "'msrun' or 'mindformers'",
         spec_set("launcher", "slurm")),
    case("spec-no-job-here", "launch --dir {tmp}/empty", "empty/mfctl.yaml: no job here", "mfctl init DIR",
         write("empty/.keep", "")),
]

MODEL_CONFIG_CASES = [
    case("own-config-missing", "launch", "nothere.yaml: model_config not found", "check the path",
         spec_set("model_config", "nothere.yaml")),
    case("own-config-invalid-yaml", "check", "own.yaml:2:", "fix the syntax",
         job_file("own.yaml", "model:\n  model_config: [LlamaConfig\n"), spec_set("model_config", "own.yaml")),
    case("own-config-without-model", "launch --dry-run", "own.yaml:1:", "no 'model' section",
         job_file("own.yaml", "runner_config:\n  epochs: 1\n"), spec_set("model_config", "own.yaml")),
    case("own-config-parallel-not-mapping", "render", "own.yaml:4: parallel_config", "must be a mapping",
         job_file("own.yaml", OWN_OK + "parallel_config: 8\n"), spec_set("model_config", "own.yaml")),
    case("own-config-data-loader-not-mapping", "plan", "own.yaml:5: train_dataset.data_loader",
         "must be a mapping",
         job_file("own.yaml", OWN_OK + "train_dataset:\n  data_loader: MindDataset\n"),
         spec_set("model_config", "own.yaml")),
    case("own-config-is-a-directory", "launch", "model_config is a directory", "expected a file",
         spec_set("model_config", "rendered-not"), lambda c: (c.job / "rendered-not").mkdir()),
    case("init-model-config-without-model", ["init", "{tmp}/new", "--model-config", "{tmp}/m.yaml",
                                             "--dataset", "/d", "--yes"],
         "m.yaml:1:", "use a preset (--model)", write("m.yaml", "trainer:\n  type: x\n")),
    case("init-model-config-invalid-yaml", ["init", "{tmp}/new", "--model-config", "{tmp}/m.yaml",
                                            "--dataset", "/d", "--yes"],
         "m.yaml:1:", "fix the syntax", write("m.yaml", "model: {type: [x\n")),
]

CLI_CASES = [
    case("launch-fanout-zero", "launch --fanout 0", "'--fanout'", "mfctl launch --help"),
    case("check-connect-timeout-zero", "check --connect-timeout 0", "'--connect-timeout'",
         "mfctl check --help"),
    case("launch-ssh-config-missing", "launch --ssh-config {tmp}/nope.cfg", "nope.cfg: ssh config file not found",
         "check the --ssh-config path"),
    case("check-ssh-config-bad-port", "check --ssh-config {tmp}/ssh.cfg", "ssh.cfg: Host n1.invalid",
         "fix Port", write("ssh.cfg", "Host *.invalid\n  Port twenty-two\n")),
    case("launch-sync-dataset-not-local", "launch --sync-dataset", "/data/x.mindrecord",
         "mfctl data prepare"),
    case("launch-resume-unknown-job", "launch --resume nosuchjob", "'nosuchjob'", "'mfctl jobs' lists them"),
    case("launch-master-addr-without-value", "launch --master-addr", "'--master-addr'",
         "requires an argument"),
    case("plan-unknown-option", "plan --bogus", "--bogus", "mfctl plan --help"),
    case("export-format-xml", "export --format xml", "--format", "csv or jsonl", recorded_job()),
    case("logs-rank-out-of-range", "logs job-20260101-000000 --rank 2", "--rank 2",
         "has ranks 0..1", recorded_job()),
    case("logs-rank-negative", "logs --rank -1", "'--rank'", "mfctl logs --help", recorded_job()),
    case("status-unknown-job", "status nosuchjob", "'nosuchjob'", "'mfctl jobs' lists them"),
    case("stop-unknown-job", "stop nosuchjob", "'nosuchjob'", "'mfctl jobs' lists them", recorded_job()),
    case("stop-no-job-launched-here", "stop", "none launched from this directory", "pass a job id"),
    case("stop-negative-grace", "stop --grace -1", "'--grace'", "mfctl stop --help", recorded_job()),
    case("supervise-finished-job", "supervise job-20260101-000000", "job job-20260101-000000 is finished",
         "mfctl launch --resume", recorded_job("finished")),
    case("watch-logs-not-a-directory", "watch --logs {tmp}/h.txt --once", "h.txt: not a directory",
         "give the folder", hosts(NODES)),
    case("watch-logs-empty-directory", "watch --logs {tmp}/empty --once", "empty: no worker_N.log",
         "found under it", write("empty/notes.txt", "nothing")),
    case("init-devices-per-node-zero", "init {tmp}/new --model tiny-llama --dataset /d --devices-per-node 0 --yes",
         "--devices-per-node", "positive integer"),
    case("init-python-with-space", ["init", "{tmp}/new", "--model", "tiny-llama", "--dataset", "/d",
                                    "--python", "/opt/my env/python", "--yes"],
         "python", "use 'setup'"),
    case("init-into-a-file", "init {tmp}/h.txt --model tiny-llama --dataset /d --yes", "h.txt: exists",
         "pick another name", hosts(NODES)),
    case("init-without-dataset", "init {tmp}/new --model tiny-llama --yes", "--dataset", "is required"),
    case("init-unknown-preset", "init {tmp}/new --model llama9 --dataset /d --yes", "--model",
         "choose one of"),
    case("init-hosts-slots-disagree", "init {tmp}/new --model tiny-llama --dataset /d --nodes {tmp}/h.txt "
         "--devices-per-node 2 --yes", "h.txt:1:", "make them agree", hosts("n1.invalid slots=1\n")),
]

DATA = "data prepare --output {tmp}/out/o.mindrecord"
DATA_CASES = [
    case("data-input-missing", f"{DATA} --input {{tmp}}/nothere.txt --train-tokenizer 64", "nothere.txt",
         "check the path"),
    case("data-glob-matches-nothing", f"{DATA} --input {{tmp}}/corpus/*.jsonl --train-tokenizer 64",
         "corpus/*.jsonl", "matches no file", write("corpus/a.txt", "x")),
    case("data-input-is-a-directory", f"{DATA} --input {{tmp}}/corpus --train-tokenizer 64", "corpus",
         "give the text files in it", write("corpus/a.tokens", " = A = \ntext\n")),
    case("data-empty-corpus", f"{DATA} --input {{tmp}}/empty.tokens --tokenizer {{tok}}", "empty.tokens",
         "no text found", write("empty.tokens", "\n   \n\n"), tokenizer=True),
    case("data-corpus-too-small", f"{DATA} --input {{tmp}}/tiny.tokens --tokenizer {{tok}} --seq-length 4096",
         "tiny.tokens", "add text or lower seq_length", write("tiny.tokens", " = T = \n \nhello world\n"),
         tokenizer=True),
    case("data-output-exists", f"{DATA} --input {{tmp}}/tiny.tokens --tokenizer {{tok}}", "o.mindrecord",
         "--force", write("tiny.tokens", " = T = \nhello\n"), write("out/o.mindrecord", "old"),
         tokenizer=True),
    case("data-trained-tokenizer-exists", f"{DATA} --input {{tmp}}/tiny.tokens --train-tokenizer 64",
         "o.tokenizer.model", "--force", write("tiny.tokens", " = T = \nhello\n"),
         write("out/o.tokenizer.model", "old")),
    case("data-tokenizer-bigger-than-job-vocab",
         f"{DATA} --input {{tmp}}/tiny.tokens --tokenizer {{tok}} --dir {{job}}", "tok.model",
         "raise vocab_size to at least 200", write("tiny.tokens", " = T = \nhello\n"),
         spec_set("train", {"vocab_size": 100}), tokenizer=True),
    case("data-train-vocab-bigger-than-job-vocab",
         f"{DATA} --input {{tmp}}/tiny.tokens --train-tokenizer 5000 --dir {{job}}", "o.tokenizer.model",
         "train at most 1000 pieces", write("tiny.tokens", " = T = \nhello\n")),
    case("data-tokenizer-not-sentencepiece", f"{DATA} --input {{tmp}}/tiny.tokens --tokenizer {{tmp}}/bad.model",
         "bad.model", "not a readable sentencepiece model", write("tiny.tokens", " = T = \nhello\n"),
         write("bad.model", bytes(range(256)) * 4)),
    case("data-tokenizer-missing", f"{DATA} --input {{tmp}}/tiny.tokens --tokenizer {{tmp}}/gone.model",
         "gone.model", "tokenizer file not found", write("tiny.tokens", " = T = \nhello\n")),
    case("data-output-not-mindrecord", "data prepare --output {tmp}/out/o.txt --input {tmp}/tiny.tokens "
         "--train-tokenizer 64", "o.txt", "must end in .mindrecord", write("tiny.tokens", "x\n")),
    case("data-output-is-a-directory", "data prepare --output {tmp}/d.mindrecord --input {tmp}/tiny.tokens "
         "--train-tokenizer 64", "d.mindrecord", "is a directory", write("tiny.tokens", "x\n"),
         write("d.mindrecord/keep", "")),
    case("data-jsonl-without-text", f"{DATA} --input {{tmp}}/c.jsonl --train-tokenizer 64", "c.jsonl:2:",
         "needs {\"text\"", write("c.jsonl", '{"text": "a"}\n{"body": "b"}\n')),
    case("data-jsonl-not-json", f"{DATA} --input {{tmp}}/c.jsonl --train-tokenizer 64", "c.jsonl:3:",
         "one JSON object per line", write("c.jsonl", '{"text": "a"}\n\n{text: b}\n')),
    case("data-input-not-utf8", f"{DATA} --input {{tmp}}/bin.tokens --train-tokenizer 64", "bin.tokens",
         "convert it to UTF-8", write("bin.tokens", b"\xff\xfe\x00 = A = \n")),
    case("data-both-tokenizer-options", f"{DATA} --input {{tmp}}/tiny.tokens --tokenizer {{tok}} "
         "--train-tokenizer 64", "--tokenizer", "give exactly one", write("tiny.tokens", "x\n"), tokenizer=True),
    case("data-no-tokenizer-option", f"{DATA} --input {{tmp}}/tiny.tokens", "--train-tokenizer",
         "give exactly one", write("tiny.tokens", "x\n")),
    case("data-seq-length-too-small", f"{DATA} --input {{tmp}}/tiny.tokens --train-tokenizer 64 --seq-length 4",
         "'--seq-length'", "mfctl data prepare --help", write("tiny.tokens", "x\n")),
    case("data-job-spec-broken", f"{DATA} --input {{tmp}}/tiny.tokens --train-tokenizer 64 --dir {{job}}",
         "mfctl.yaml:{L[master_port]}: master_port", "less than or equal to 65535",
         write("tiny.tokens", "x\n"), spec_set("master_port", 99999)),
]

ALL_CASES = HOSTS_CASES + SPEC_CASES + MODEL_CONFIG_CASES + CLI_CASES + DATA_CASES


def test_the_suite_is_comprehensive() -> None:
    ids = [p.values[0].id for p in ALL_CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30
    for group in (HOSTS_CASES, SPEC_CASES, MODEL_CONFIG_CASES, CLI_CASES, DATA_CASES):
        assert len(group) >= 5


# --------------------------------------------------------------------------- the check

@pytest.fixture(scope="module")
def tokenizer_200(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 200-piece sentencepiece model, trained on a slice of the demo corpus."""
    pytest.importorskip("sentencepiece", reason="dataset preparation needs sentencepiece (mfctl[train])")
    from mfctl.data.corpus import pydoc_wikitext
    from mfctl.data.prepare import train_tokenizer
    from mfctl.data.wikitext import wikitext_paragraphs

    path = tmp_path_factory.mktemp("tokenizer") / "tok.model"
    train_tokenizer(wikitext_paragraphs(pydoc_wikitext()[:150_000]), path, 200, [path])
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its mode and content digest (directories: mode only)."""
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        state[str(path.relative_to(root))] = (st.st_mode, digest)
    return state


def spec_lines(spec: Path) -> dict[str, int]:
    """Line of each key in mfctl.yaml (the last one, if a key repeats)."""
    lines: dict[str, int] = {}
    if spec.is_file():
        for number, line in enumerate(spec.read_text().splitlines(), start=1):
            m = re.match(r"^\s*([A-Za-z_]\w*):", line)
            if m:
                lines[m.group(1)] = number
    return lines


@pytest.mark.parametrize("c", ALL_CASES)
def test_bad_input(mfctl, tmp_path: Path, request: pytest.FixtureRequest, c: Case) -> None:
    base = tmp_path / "case"
    base.mkdir()
    (base / "hosts.txt").write_text(NODES)
    job = base / "job"
    r = mfctl("init", job, "--model", "tiny-llama", "--nodes", base / "hosts.txt", "--devices-per-node", "1",
              "--dataset", "/data/x.mindrecord", "--yes", cwd=base)
    assert r.exit_code == 0, r.stderr
    tok = request.getfixturevalue("tokenizer_200") if c.tokenizer else None
    ctx = Ctx(base, job, tok)
    for step in c.setup:
        step(ctx)

    values = {"tmp": base, "job": job, "tok": tok, "L": spec_lines(ctx.spec)}
    argv = [a.format(**values) for a in c.argv]
    jobs_before = json.loads(mfctl("jobs", "--json").stdout)
    before = snapshot(base)

    r = mfctl(*argv, cwd=Path(c.cwd.format(**values)))

    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and r.stderr.endswith("\n"), f"stderr is not one line: {r.stderr!r}"
    message = lines[0]
    assert message.startswith("error: "), message
    assert c.place.format(**values) in message, f"place {c.place.format(**values)!r} not named: {message}"
    assert c.hint in message, f"no advice {c.hint!r}: {message}"
    assert "Traceback" not in r.stdout + r.stderr
    assert snapshot(base) == before, "the command wrote or changed files"
    assert json.loads(mfctl("jobs", "--json").stdout) == jobs_before, "the job database changed"
