"""Dataset preparation: raw text -> sentencepiece token ids -> MindRecord, the first step of pretraining.

The layout is the one MindFormers' Llama pretraining reads through ``CausalLanguageModelDataset``:
one MindRecord file with a single column ``input_ids`` (int32, shape [-1]); every sample is
``seq_length + 1`` tokens so that the model can shift it into inputs and labels.

The samples are those of MindFormers 1.9.0's ``llama_preprocess.py --dataset_type wiki``, in the
same order: a WikiText file is cleaned and split into paragraphs, headings dropped
(``mfctl.data.wikitext``, read by ``mfctl.data.inputs``); every paragraph, or every JSONL/Parquet
document, is encoded as
``[BOS] + ids + [EOS]`` the way MindFormers' ``LlamaTokenizer`` does (``mfctl.data.encode``); the
encoded texts are concatenated in input order and cut into consecutive chunks; the tail that does
not fill a chunk is dropped.

Design decisions:
- All or nothing. Everything is written into a hidden temporary directory beside the output and
  moved into place only after the last sample is committed, so a failure (bad input, Ctrl-C, a
  full disk) leaves no partial dataset for a training job to pick up. The MindRecord file keeps its
  final name inside the temporary directory because its index (``.db``) records that name.
- MindSpore creates MindRecord files with mode 0600; simulated nodes run as other users on the same
  filesystem, so the files are made 0644.
- mindspore and sentencepiece are imported inside functions: ``mfctl`` must start fast.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfctl.data.encode import LlamaEncoder
from mfctl.data.inputs import read_documents, resolve_inputs
from mfctl.errors import BadInput

SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}}
MINDRECORD_SUFFIX = ".mindrecord"
# Samples handed to the MindRecord writer per call: bounded memory, few calls.
_WRITE_BATCH = 1024
# Documents tokenized per call to sentencepiece (it encodes a list in parallel) and per progress tick.
_ENCODE_BATCH = 256


@dataclass(frozen=True)
class PrepareSummary:
    """What ``prepare_dataset`` wrote."""

    documents: int
    """Texts encoded: WikiText paragraphs (headings excluded), non-blank JSONL/Parquet rows."""
    tokens: int
    """Tokens in the concatenated stream, BOS/EOS included (the dropped tail too)."""
    samples: int
    """MindRecord rows written, each ``seq_length + 1`` tokens."""
    seq_length: int
    output: Path
    """The MindRecord file: the path to give MindFormers as ``train_dataset_dir``."""
    files: tuple[Path, ...]
    """Every file written (the MindRecord file, its ``.db`` index, a trained tokenizer)."""
    tokenizer: Path
    """The sentencepiece model used (given, or trained beside the output)."""
    vocab_size: int
    """Pieces in the tokenizer: the model's ``vocab_size`` must be at least this."""
    inputs: tuple[Path, ...]
    """The input files the patterns matched, in reading order."""


def tokenizer_path_for(output: Path) -> Path:
    """Where a tokenizer trained for ``output`` is saved: ``<output stem>.tokenizer.model``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.tokenizer.model")


def index_path_for(output: Path) -> Path:
    """The MindRecord index file MindSpore writes beside ``output``."""
    output = Path(output)
    return output.with_name(output.name + ".db")


def prepare_dataset(
    inputs: list[str],
    output: Path,
    seq_length: int,
    tokenizer: Path | None = None,
    train_tokenizer_vocab: int | None = None,
    force: bool = False,
    max_vocab: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareSummary:
    """Tokenize text files into a MindRecord pretraining dataset.

    Args:
        inputs: glob patterns (or plain paths) of WikiText token files (``wiki.train.tokens``),
            ``.jsonl`` files or ``.parquet`` files with a ``text`` field. One WikiText file gives
            the samples of MindFormers' ``llama_preprocess.py --dataset_type wiki``; several inputs
            are encoded one by one and their streams concatenated before chunking.
        output: the MindRecord file to create; its name must end in ``.mindrecord``.
        seq_length: the model's sequence length; samples hold ``seq_length + 1`` tokens.
        tokenizer: a sentencepiece model file to encode with.
        train_tokenizer_vocab: instead of ``tokenizer``, train a sentencepiece model with this many
            pieces on the inputs, saved as ``<output stem>.tokenizer.model`` beside the output.
        force: replace an existing output (and trained tokenizer).
        max_vocab: the model's ``vocab_size``; a tokenizer with more pieces is refused.
        progress: called as ``progress(documents_done, documents_total)`` while tokenizing.

    Raises:
        BadInput: one line naming the file and what to do. Nothing is left on disk.
    """
    output = Path(output)
    _check_arguments(output, seq_length, tokenizer, train_tokenizer_vocab, max_vocab)
    trained_tokenizer = tokenizer_path_for(output) if train_tokenizer_vocab is not None else None
    finals = [output, index_path_for(output)] + ([trained_tokenizer] if trained_tokenizer else [])
    if not force:
        for path in finals:
            if path.exists():
                raise BadInput(f"{path}: already exists; pass force (--force) to overwrite it")

    files = resolve_inputs(inputs)
    # A given tokenizer is checked before the corpus is read: fail fast on the cheap check.
    encoder = load_encoder(Path(tokenizer), max_vocab) if tokenizer is not None else None
    documents = list(read_documents(files))
    # Whitespace-only WikiText paragraphs are kept (upstream encodes them) but are not text.
    if not any(doc.strip() for doc in documents):
        raise BadInput(
            f"{_names(files)}: no text found (WikiText heading paragraphs and blank lines do not count); "
            "give a corpus with some non-empty documents"
        )

    created_parent = _mkdir_parents(output.parent)
    workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        if encoder is None:
            assert trained_tokenizer is not None and train_tokenizer_vocab is not None
            model_file = train_tokenizer(
                documents, workdir / trained_tokenizer.name, train_tokenizer_vocab, files
            )
            encoder = load_encoder(model_file, max_vocab)
        vocab_size = encoder.sp.get_piece_size()

        stream = _encode(encoder, documents, progress)
        need = seq_length + 1
        samples = len(stream) // need
        if samples == 0:
            raise BadInput(
                f"{_names(files)}: the corpus has {len(stream)} tokens but one sample needs "
                f"seq_length + 1 = {need}; add text or lower seq_length"
            )
        _write_mindrecord(workdir / output.name, stream, need, samples)

        written = [workdir / output.name, workdir / index_path_for(output).name]
        if trained_tokenizer is not None:
            written.append(workdir / trained_tokenizer.name)
        for path in written:
            os.chmod(path, 0o644)
        # The data file last: a reader that finds it (MindFormers globs *.mindrecord) also finds
        # its index and tokenizer.
        for path in [*written[1:], written[0]]:
            os.replace(path, output.parent / path.name)
        return PrepareSummary(
            documents=len(documents),
            tokens=len(stream),
            samples=samples,
            seq_length=seq_length,
            output=output,
            files=tuple(output.parent / p.name for p in written),
            tokenizer=trained_tokenizer if trained_tokenizer is not None else Path(tokenizer),  # type: ignore[arg-type]
            vocab_size=vocab_size,
            inputs=tuple(files),
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        if created_parent is not None:
            _remove_created_dirs(output.parent, created_parent)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _check_arguments(
    output: Path,
    seq_length: int,
    tokenizer: Path | None,
    train_tokenizer_vocab: int | None,
    max_vocab: int | None,
) -> None:
    if not output.name.endswith(MINDRECORD_SUFFIX):
        raise BadInput(
            f"{output}: the output name must end in {MINDRECORD_SUFFIX} "
            "(MindFormers only loads files named *.mindrecord)"
        )
    if output.is_dir():
        raise BadInput(f"{output}: is a directory; give the path of the .mindrecord file to create")
    if not isinstance(seq_length, int) or seq_length < 1:
        raise BadInput(f"seq_length must be a positive integer, got {seq_length!r}")
    if tokenizer is None and train_tokenizer_vocab is None:
        raise BadInput(
            "no tokenizer: give a sentencepiece model file, or a vocabulary size to train one"
        )
    if tokenizer is not None and train_tokenizer_vocab is not None:
        raise BadInput(
            f"{tokenizer}: give either a tokenizer or a vocabulary size to train one, not both"
        )
    if train_tokenizer_vocab is not None:
        if not isinstance(train_tokenizer_vocab, int) or train_tokenizer_vocab < 16:
            raise BadInput(
                f"tokenizer vocabulary size must be an integer >= 16, got {train_tokenizer_vocab!r}"
            )
        if max_vocab is not None and train_tokenizer_vocab > max_vocab:
            raise BadInput(
                f"{tokenizer_path_for(output)}: a {train_tokenizer_vocab}-piece tokenizer does not "
                f"fit the model's vocab_size {max_vocab}; train at most {max_vocab} pieces"
            )
    if tokenizer is not None and not Path(tokenizer).is_file():
        raise BadInput(f"{tokenizer}: tokenizer file not found; give a sentencepiece .model file")


def train_tokenizer(documents: Sequence[str], model_file: Path, vocab_size: int, files: Sequence[Path]) -> Path:
    """Train a sentencepiece unigram model with Llama's special ids (unk 0, bos 1, eos 2, no pad)."""
    import sentencepiece as spm

    model_file = Path(model_file)
    if not model_file.name.endswith(".model"):
        raise ValueError(f"{model_file}: a sentencepiece model file name ends in .model")
    lines = [line for doc in documents for line in doc.splitlines() if line.strip()]
    distinct_chars = len({c for line in lines for c in line})
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(model_file)[: -len(".model")],
            vocab_size=vocab_size,
            model_type="unigram",
            # Cover every character when they fit comfortably: decoding stays lossless.
            character_coverage=1.0 if distinct_chars <= vocab_size // 2 else 0.9995,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            max_sentence_length=1 << 16,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            num_threads=max(1, min(4, os.cpu_count() or 1)),
            minloglevel=2,
        )
    except (RuntimeError, OSError) as e:
        # sentencepiece prefixes its reason with the C++ source location and the failed check.
        message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        message = message.rsplit("] ", 1)[-1]
        raise BadInput(
            f"{_names(files)}: cannot train a {vocab_size}-piece tokenizer on this corpus ({message}); "
            "use a smaller vocabulary or more text"
        ) from None
    vocab = model_file.with_name(model_file.name[: -len(".model")] + ".vocab")
    vocab.unlink(missing_ok=True)
    return model_file


def load_tokenizer(model_file: Path, max_vocab: int | None = None) -> Any:
    """A sentencepiece processor for ``model_file``, checked against the model's vocab size."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(model_file))
    except (RuntimeError, OSError):
        raise BadInput(
            f"{model_file}: not a readable sentencepiece model; give a tokenizer .model file"
        ) from None
    size = sp.get_piece_size()
    if max_vocab is not None and size > max_vocab:
        raise BadInput(
            f"{model_file}: the tokenizer has {size} pieces but the model's vocab_size is "
            f"{max_vocab}; raise vocab_size to at least {size} or use a smaller tokenizer"
        )
    return sp


def load_encoder(model_file: Path, max_vocab: int | None = None) -> LlamaEncoder:
    """``load_tokenizer``, then the Llama framing: refused here if the model has no usable BOS/EOS."""
    return LlamaEncoder(load_tokenizer(model_file, max_vocab), Path(model_file))


def _encode(encoder: LlamaEncoder, documents: Sequence[str],
            progress: Callable[[int, int], None] | None) -> Any:
    """The whole corpus as one int32 array: each text's ``[BOS] + ids + [EOS]``, in order."""
    import numpy as np

    total = len(documents)
    parts: list[Any] = []
    if progress is not None:
        progress(0, total)
    for start in range(0, total, _ENCODE_BATCH):
        for ids in encoder.encode_all(documents[start : start + _ENCODE_BATCH]):
            parts.append(np.asarray(ids, dtype=np.int32))
        if progress is not None:
            progress(min(start + _ENCODE_BATCH, total), total)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def _write_mindrecord(path: Path, stream: Any, sample_len: int, samples: int) -> None:
    from mindspore.mindrecord import FileWriter

    chunks = stream[: samples * sample_len].reshape(samples, sample_len)
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    writer.add_schema(SCHEMA, "mfctl pretraining samples: seq_length + 1 token ids")
    for start in range(0, samples, _WRITE_BATCH):
        writer.write_raw_data([{"input_ids": row} for row in chunks[start : start + _WRITE_BATCH]])
    writer.commit()


def _names(files: Sequence[Path]) -> str:
    shown = ", ".join(str(f) for f in files[:3])
    return shown + (f" (+{len(files) - 3} more)" if len(files) > 3 else "")


def _mkdir_parents(directory: Path) -> Path | None:
    """Create ``directory``; return the topmost directory this created, or None if it existed."""
    top: Path | None = None
    d = directory
    while not d.exists() and d.parent != d:
        top = d
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    return top


def _remove_created_dirs(directory: Path, top: Path) -> None:
    """Remove ``directory`` and its parents up to ``top`` (the ones we created) while empty."""
    d = directory
    while True:
        try:
            d.rmdir()
        except OSError:
            return
        if d == top or d.parent == d:
            return
        d = d.parent
