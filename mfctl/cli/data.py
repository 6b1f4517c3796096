"""Data commands: ``data prepare`` (a MindRecord dataset from a corpus) and ``demo`` (a real tiny run)."""

from __future__ import annotations

from pathlib import Path

import typer

from mfctl.cli import views
from mfctl.cli.options import json_opt
from mfctl.cli.root import app
from mfctl.errors import BadInput

data_app = typer.Typer(help="Prepare pretraining datasets (MindRecord).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    inputs: list[str] = typer.Option(..., "--input", "-i",
                                     help="Input files or globs: WikiText token files (wiki rules), "
                                     ".jsonl/.json or .parquet with a 'text' field (taken as is). "
                                     "Repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="The .mindrecord file to write."),
    seq_length: int = typer.Option(4096, "--seq-length", min=8,
                                   help="Model sequence length; each sample is seq_length + 1 tokens."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer",
                                             help="sentencepiece model (Llama's tokenizer.model)."),
    train_tokenizer: int | None = typer.Option(
        None, "--train-tokenizer", metavar="VOCAB", min=16,
        help="Train a sentencepiece tokenizer of VOCAB pieces on the input first (saved beside the output)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    directory: Path = typer.Option(Path("."), "--dir", "-d",
                                   help="Job dir: refuse a tokenizer larger than its model's vocab."),
    as_json: bool = json_opt("Print the summary as JSON."),
) -> None:
    """Tokenize a corpus into a MindRecord pretraining dataset ({"input_ids": int32[-1]}).

    WikiText token files (any name not ending in .jsonl/.json/.parquet) follow MindFormers 1.9.0's
    llama_preprocess.py --dataset_type wiki exactly: the text is cleaned (" @-@ " -> "-", no space
    before punctuation or inside brackets and quotes, ...), split into paragraphs at blank lines,
    and heading paragraphs ("= Title =", "= = Section = =") are dropped. One file with --tokenizer
    gives the same samples, in the same order, as that script with the same --seq_length.

    JSONL/Parquet: each non-blank 'text' is one document, taken as is (no cleaning, nothing dropped).

    Every input: each paragraph or document is encoded as MindFormers' LlamaTokenizer does ("<s>",
    "</s>", "<unk>" in the text are those tokens) and framed as BOS + ids + EOS, with the BOS/EOS
    ids of the tokenizer model file; the encoded texts are concatenated in input order and cut into
    samples of seq_length + 1 tokens; the tail that does not fill a sample is dropped.

    Example: mfctl data prepare --input 'wikitext-2/wiki.train.tokens' --tokenizer tokenizer.model
    --seq-length 4096 --output wiki4096.mindrecord
    """
    from mfctl.data.prepare import prepare_dataset

    if (tokenizer is None) == (train_tokenizer is None):
        raise BadInput("give exactly one of --tokenizer FILE or --train-tokenizer VOCAB")
    max_vocab = None
    if (directory / "mfctl.yaml").exists():
        from mfctl.jobs.jobdir import load_job
        from mfctl.render import model_shape

        job = load_job(directory)
        max_vocab = model_shape(job.spec, job.preset).vocab_size
    with views.tokenize_progress(as_json) as bar:
        task = bar.add_task("docs", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = prepare_dataset(list(inputs), output, seq_length, tokenizer=tokenizer,
                                  train_tokenizer_vocab=train_tokenizer, force=force,
                                  max_vocab=max_vocab, progress=progress)
    result = {"output": str(summary.output), "documents": summary.documents, "tokens": summary.tokens,
              "samples": summary.samples, "seq_length": summary.seq_length,
              "tokenizer": str(summary.tokenizer), "vocab_size": summary.vocab_size,
              "files": [str(f) for f in summary.files]}
    if as_json:
        views.print_json(result)
        return
    views.print_dataset_summary(summary)


@app.command()
def demo(
    directory: Path | None = typer.Option(None, "--dir", "-d",
                                             help="New directory for the demo job (default: "
                                             "./mfctl-demo-<time>)."),
    headless: bool = typer.Option(False, "--headless",
                                  help="No dashboard: progress and per-rank loss lines, for scripts/CI."),
    as_json: bool = json_opt("Print the final summary as JSON (headless)."),
) -> None:
    """Pretrain a tiny Llama for real on this machine: corpus, tokenizer, MindRecord dataset,
    2 data-parallel workers under msrun, live progress, and a summary with the checkpoints.

    Example: mfctl demo --headless --dir demo1
    """
    from mfctl.cli.watch import dashboard_or_none
    from mfctl.live.demo import run_demo_cli

    rc = run_demo_cli(directory, headless or as_json, as_json, views.out, views.err,
                      dashboard=dashboard_or_none(exit_when_done=True))
    raise typer.Exit(rc)
