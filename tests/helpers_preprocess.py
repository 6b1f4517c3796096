"""Run MindFormers' own WikiText preprocessing, to compare mfctl's samples against it.

The expected data in tests/data/preprocess/ was made with this module from a MindFormers 1.9.0
checkout (the installed wheel must be 1.9.0 too, the script imports it):

    MFCTL_MINDFORMERS_HOME=/path/to/mindformers python tests/helpers_preprocess.py

It trains the two small tokenizers if they are missing, runs ``llama_preprocess.py --dataset_type
wiki`` on ``wiki.small.tokens`` for each case in ``CASES`` and writes ``expected_<case>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "preprocess"
CORPUS = DATA / "wiki.small.tokens"
# A Llama-style model (identity normalization, whitespace kept, byte fallback, unk/bos/eos 0/1/2)
# and one with the default normalizer and other special ids, to show the ids come from the file.
LLAMA_MODEL = DATA / "llama400.model"
ODD_MODEL = DATA / "odd-ids250.model"
# case name -> (tokenizer, --seq_length)
CASES = {
    "seq32": (LLAMA_MODEL, 32),
    "seq64": (LLAMA_MODEL, 64),
    "odd_ids_seq16": (ODD_MODEL, 16),
}
SCRIPT = Path("mindformers") / "tools" / "dataset_preprocess" / "llama" / "llama_preprocess.py"


def mindformers_home() -> Path | None:
    """The checkout named by MFCTL_MINDFORMERS_HOME, if it has the preprocessing script."""
    home = os.environ.get("MFCTL_MINDFORMERS_HOME")
    if home and (Path(home) / SCRIPT).is_file():
        return Path(home)
    return None


def read_samples(path: Path) -> list[list[int]]:
    """Every ``input_ids`` row of a MindRecord file, in file order."""
    from mindspore.mindrecord import FileReader

    reader = FileReader(str(path))
    try:
        return [[int(t) for t in row["input_ids"]] for row in reader.get_next()]
    finally:
        reader.close()


def run_upstream(home: Path, corpus: Path, model: Path, seq_length: int) -> list[list[int]]:
    """The samples ``llama_preprocess.py --dataset_type wiki`` writes for ``corpus``."""
    with tempfile.TemporaryDirectory(prefix="mf-preprocess-") as tmp:
        out = Path(tmp) / "out" / "wiki.mindrecord"
        # Run in the temporary directory: MindFormers writes its logs under ./output.
        proc = subprocess.run(
            [sys.executable, str(home / SCRIPT), "--dataset_type", "wiki", "--input_glob", str(corpus),
             "--model_file", str(model), "--seq_length", str(seq_length), "--output_file", str(out)],
            cwd=tmp, capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"llama_preprocess.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return read_samples(out)


def train_models() -> None:
    import sentencepiece as spm

    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    common = dict(model_type="unigram", character_coverage=0.995, num_threads=1,
                  shuffle_input_sentence=False, max_sentence_length=1 << 16, minloglevel=2)
    if not LLAMA_MODEL.exists():
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=str(LLAMA_MODEL.with_suffix("")), vocab_size=400,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, normalization_rule_name="identity",
            remove_extra_whitespaces=False, byte_fallback=True, **common)
    if not ODD_MODEL.exists():
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=str(ODD_MODEL.with_suffix("")), vocab_size=250,
            unk_id=3, bos_id=7, eos_id=11, pad_id=0, **common)
    for model in (LLAMA_MODEL, ODD_MODEL):
        model.with_suffix(".vocab").unlink(missing_ok=True)


def main() -> int:
    home = mindformers_home()
    if home is None:
        print("set MFCTL_MINDFORMERS_HOME to a MindFormers 1.9.0 checkout", file=sys.stderr)
        return 2
    train_models()
    for case, (model, seq) in CASES.items():
        samples = run_upstream(home, CORPUS, model, seq)
        record = {"corpus": CORPUS.name, "tokenizer": model.name, "seq_length": seq,
                  "made_with": "mindformers 1.9.0 llama_preprocess.py --dataset_type wiki",
                  "samples": samples}
        path = DATA / f"expected_{case}.json"
        path.write_text(json.dumps(record, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"{path.name}: {len(samples)} samples of {seq + 1} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
