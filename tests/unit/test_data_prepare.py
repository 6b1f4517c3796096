"""Dataset preparation: a real round trip through sentencepiece and MindRecord, and every bad input.

Bad inputs must raise BadInput with one line that names the file, and leave nothing on disk.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import unicodedata
from pathlib import Path

import pytest

from mfctl.data import prepare as prepare_module
from mfctl.data.corpus import pydoc_wikitext, write_pydoc_corpus
from mfctl.data.prepare import (
    PrepareSummary,
    index_path_for,
    prepare_dataset,
    tokenizer_path_for,
)
from mfctl.data.wikitext import wikitext_paragraphs
from mfctl.errors import BadInput

pytest.importorskip("sentencepiece", reason="dataset preparation needs sentencepiece (mfctl[train])")

SEQ = 64
VOCAB = 1000


def _needs_mindspore() -> None:
    pytest.importorskip("mindspore", reason="writing MindRecord needs mindspore (mfctl[train])")


def _squeeze(text: str) -> str:
    # sentencepiece applies NFKC and collapses whitespace; compare texts the same way.
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _tree(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "pydoc.train.tokens"
    articles = write_pydoc_corpus(path)
    assert articles >= 50
    return path


@pytest.fixture(scope="module")
def prepared(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> PrepareSummary:
    """The pydoc corpus, a trained 1000-piece tokenizer, seq 64: what the demo trains on."""
    _needs_mindspore()
    out = tmp_path_factory.mktemp("prepared") / "data" / "pydoc.mindrecord"
    ticks: list[tuple[int, int]] = []
    summary = prepare_dataset(
        [str(corpus)], out, SEQ, train_tokenizer_vocab=VOCAB, max_vocab=VOCAB,
        progress=lambda done, total: ticks.append((done, total)),
    )
    assert ticks[0][0] == 0 and ticks[-1][0] == ticks[-1][1] == summary.documents
    return summary


@pytest.fixture(scope="module")
def tokenizer(prepared: PrepareSummary) -> Path:
    return prepared.tokenizer


# ---------------------------------------------------------------------------------------------
# The demo corpus


def test_pydoc_corpus_is_wikitext_and_big_enough(corpus: Path) -> None:
    text = corpus.read_text(encoding="utf-8")
    assert text == pydoc_wikitext()  # deterministic
    titles = [line for line in text.splitlines() if re.match(r"^ = [^=].* = $", line)]
    assert len(titles) >= 50
    assert ' = The "assert" statement = ' in titles
    assert re.search(r"^ = = .+ = = $", text, re.MULTILINE), "sections are = = Sub = ="
    assert "Assert statements are a convenient way to insert debugging assertions into a program:" in text
    assert len(text) > 300_000
    assert oct(stat.S_IMODE(corpus.stat().st_mode)) == "0o644"


def test_pydoc_corpus_paragraphs_are_separated_like_wikitext(corpus: Path) -> None:
    """Blank lines between paragraphs: MindFormers' wiki rules frame each paragraph on its own."""
    paragraphs = wikitext_paragraphs(corpus.read_text(encoding="utf-8"))
    assert len(paragraphs) > 1000
    assert paragraphs[0] == "Assert statements are a convenient way to insert debugging assertions into a program:"
    assert not any(p.lstrip().startswith("=") for p in paragraphs)


# ---------------------------------------------------------------------------------------------
# Round trip


def test_round_trip_mindrecord_and_detokenize(prepared: PrepareSummary, corpus: Path) -> None:
    import sentencepiece as spm
    from mindspore.mindrecord import FileReader

    out = prepared.output
    assert prepared.files == (out, index_path_for(out), tokenizer_path_for(out))
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(p.name for p in prepared.files)
    for path in prepared.files:
        assert oct(stat.S_IMODE(path.stat().st_mode)) == "0o644", path
    assert prepared.vocab_size == VOCAB
    assert prepared.samples == prepared.tokens // (SEQ + 1)
    # The demo needs >= 32 steps of global batch 8.
    assert prepared.samples >= 256

    reader = FileReader(str(out))
    try:
        rows = [row["input_ids"] for _, row in zip(range(prepared.samples + 1), reader.get_next())]
    finally:
        reader.close()
    assert len(rows) == prepared.samples
    assert all(row.shape == (SEQ + 1,) and str(row.dtype) == "int32" for row in rows)
    assert max(int(row.max()) for row in rows) < VOCAB

    sp = spm.SentencePieceProcessor(model_file=str(prepared.tokenizer))
    bos, eos = sp.bos_id(), sp.eos_id()
    assert (sp.unk_id(), bos, eos) == (0, 1, 2)
    original = _squeeze(corpus.read_text(encoding="utf-8"))
    # Samples are consecutive chunks of the stream: the first one starts with the first paragraph
    # of the first article (the heading is dropped), framed by BOS ... EOS.
    assert int(rows[0][0]) == bos
    first_end = [int(t) for t in rows[0]].index(eos)
    assert _squeeze(sp.decode([int(t) for t in rows[0][1:first_end]])) == (
        "Assert statements are a convenient way to insert debugging assertions into a program:")
    for index in (0, len(rows) // 2, len(rows) - 1):
        ids = [int(t) for t in rows[index]]
        segments: list[list[int]] = [[]]
        for t in ids:
            if t in (bos, eos):
                segments.append([])
            else:
                segments[-1].append(t)
        longest = max(segments, key=len)
        text = _squeeze(sp.decode(longest))
        assert len(text) > 10
        # The wiki rules only close up spaces; compare without them.
        assert text.replace(" ", "") in original.replace(" ", ""), (index, text)


def test_existing_tokenizer_multiple_inputs_jsonl(tmp_path: Path, tokenizer: Path, corpus: Path) -> None:
    _needs_mindspore()
    jsonl = tmp_path / "extra.jsonl"
    docs = [{"text": "The quick brown fox jumps over the lazy dog. " * 30}, {"text": "   "}, {"text": "Second."}]
    jsonl.write_text("\n".join(json.dumps(d) for d in docs) + "\n\n", encoding="utf-8")
    out = tmp_path / "both.mindrecord"
    summary = prepare_dataset([str(corpus), str(tmp_path / "*.jsonl")], out, SEQ, tokenizer=tokenizer, max_vocab=VOCAB)
    assert summary.inputs == (corpus, jsonl)
    assert summary.tokenizer == tokenizer
    assert summary.files == (out, index_path_for(out))  # no tokenizer trained
    single = prepare_dataset([str(jsonl)], tmp_path / "one.mindrecord", SEQ, tokenizer=tokenizer)
    assert single.documents == 2  # the blank text is skipped
    assert summary.documents == single.documents + len(wikitext_paragraphs(corpus.read_text()))
    # JSONL text is not cleaned and has no headings to drop: each row is [BOS] + its ids + [EOS].
    import sentencepiece as spm
    from mindspore.mindrecord import FileReader

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    reader = FileReader(str(single.output))
    try:
        stream = [int(t) for row in reader.get_next() for t in row["input_ids"]]
    finally:
        reader.close()
    first = [sp.bos_id(), *sp.encode(docs[0]["text"]), sp.eos_id()]
    assert stream == (first + [sp.bos_id(), *sp.encode("Second."), sp.eos_id()])[: len(stream)]


def test_parquet_input(tmp_path: Path, tokenizer: Path) -> None:
    _needs_mindspore()
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["A parquet document about Python lists. " * 20, None, "Another one."]}), path)
    summary = prepare_dataset([str(path)], tmp_path / "pq.mindrecord", SEQ, tokenizer=tokenizer)
    assert summary.documents == 2 and summary.samples >= 1


def test_force_overwrites(tmp_path: Path, tokenizer: Path, corpus: Path) -> None:
    _needs_mindspore()
    out = tmp_path / "d.mindrecord"
    first = prepare_dataset([str(corpus)], out, SEQ, tokenizer=tokenizer)
    second = prepare_dataset([str(corpus)], out, 32, tokenizer=tokenizer, force=True)
    assert second.samples > first.samples
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mindrecord", "d.mindrecord.db"]


# ---------------------------------------------------------------------------------------------
# Bad input: BadInput naming the file, nothing left behind


def _assert_bad(tmp_path: Path, match: str, named: str | Path, **kwargs) -> BadInput:
    before = _tree(tmp_path)
    kwargs.setdefault("output", tmp_path / "new" / "out.mindrecord")
    kwargs.setdefault("seq_length", SEQ)
    with pytest.raises(BadInput) as info:
        prepare_dataset(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(named) in message, message
    assert re.search(match, message), message
    assert _tree(tmp_path) == before, "partial output left behind"
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "wiki.train.tokens"
    _assert_bad(tmp_path, "no such file", missing, inputs=[str(missing)], train_tokenizer_vocab=100)


def test_glob_matching_nothing(tmp_path: Path, corpus: Path) -> None:
    pattern = str(tmp_path / "*.jsonl")
    _assert_bad(tmp_path, "matches no file", pattern, inputs=[str(corpus), pattern], train_tokenizer_vocab=100)


def test_directory_input(tmp_path: Path) -> None:
    (tmp_path / "texts").mkdir()
    _assert_bad(tmp_path, "is a directory", tmp_path / "texts", inputs=[str(tmp_path / "texts")],
                train_tokenizer_vocab=100)


def test_empty_corpus(tmp_path: Path, tokenizer: Path) -> None:
    empty = tmp_path / "empty.tokens"
    empty.write_text(" \n \n\n", encoding="utf-8")
    _assert_bad(tmp_path, "no text", empty, inputs=[str(empty)], tokenizer=tokenizer)


def test_corpus_too_small_for_one_sample(tmp_path: Path, tokenizer: Path) -> None:
    small = tmp_path / "small.tokens"
    small.write_text(" = Tiny = \n \n A very short article . \n", encoding="utf-8")
    err = _assert_bad(tmp_path, r"has \d+ tokens but one sample needs seq_length \+ 1 = 65", small,
                      inputs=[str(small)], tokenizer=tokenizer)
    assert "lower seq_length" in str(err)


def test_tokenizer_larger_than_model_vocab(tmp_path: Path, tokenizer: Path, corpus: Path) -> None:
    _assert_bad(tmp_path, "1000 pieces but the model's vocab_size is 500", tokenizer,
                inputs=[str(corpus)], tokenizer=tokenizer, max_vocab=500)


def test_trained_vocab_larger_than_model_vocab(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "new" / "out.mindrecord"
    _assert_bad(tmp_path, "2000-piece tokenizer does not fit the model's vocab_size 1000",
                tokenizer_path_for(out), output=out, inputs=[str(corpus)],
                train_tokenizer_vocab=2000, max_vocab=1000)


def test_vocab_too_large_for_corpus(tmp_path: Path) -> None:
    small = tmp_path / "small.tokens"
    small.write_text(" = Tiny = \n \n A very short article about nothing much . \n", encoding="utf-8")
    _assert_bad(tmp_path, "cannot train a 1000-piece tokenizer.*smaller vocabulary", small,
                inputs=[str(small)], train_tokenizer_vocab=1000)


def test_output_exists_without_force(tmp_path: Path, tokenizer: Path, corpus: Path) -> None:
    out = tmp_path / "taken.mindrecord"
    out.write_bytes(b"someone else's data")
    _assert_bad(tmp_path, "already exists.*force", out, output=out, inputs=[str(corpus)], tokenizer=tokenizer)
    assert out.read_bytes() == b"someone else's data"


def test_trained_tokenizer_exists_without_force(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "fresh.mindrecord"
    tokenizer_path_for(out).write_bytes(b"an older tokenizer")
    _assert_bad(tmp_path, "already exists", tokenizer_path_for(out), output=out, inputs=[str(corpus)],
                train_tokenizer_vocab=100)


def test_unreadable_tokenizer(tmp_path: Path, corpus: Path) -> None:
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"\x00not a sentencepiece model")
    _assert_bad(tmp_path, "not a readable sentencepiece model", garbage, inputs=[str(corpus)], tokenizer=garbage)
    missing = tmp_path / "missing.model"
    _assert_bad(tmp_path, "not found", missing, inputs=[str(corpus)], tokenizer=missing)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads any file")
def test_tokenizer_without_read_permission(tmp_path: Path, tokenizer: Path, corpus: Path) -> None:
    locked = tmp_path / "locked.model"
    locked.write_bytes(tokenizer.read_bytes())
    locked.chmod(0)
    _assert_bad(tmp_path, "not a readable sentencepiece model", locked, inputs=[str(corpus)], tokenizer=locked)


def test_bad_jsonl_line(tmp_path: Path, tokenizer: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"content": "no text field"}\n', encoding="utf-8")
    _assert_bad(tmp_path, "no 'text' string field", f"{bad}:2", inputs=[str(bad)], tokenizer=tokenizer)
    bad.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    _assert_bad(tmp_path, "not valid JSON", f"{bad}:2", inputs=[str(bad)], tokenizer=tokenizer)


def test_not_utf8(tmp_path: Path, tokenizer: Path) -> None:
    latin = tmp_path / "latin1.tokens"
    latin.write_bytes(" = Caf\xe9 = \n".encode("latin-1"))
    _assert_bad(tmp_path, "not UTF-8", latin, inputs=[str(latin)], tokenizer=tokenizer)


def test_parquet_without_pyarrow(tmp_path: Path, tokenizer: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "docs.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    _assert_bad(tmp_path, "pip install pyarrow", path, inputs=[str(path)], tokenizer=tokenizer)


def test_output_name_must_be_mindrecord(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "data.bin"
    _assert_bad(tmp_path, r"must end in \.mindrecord", out, output=out, inputs=[str(corpus)], train_tokenizer_vocab=100)


def test_failure_while_writing_leaves_nothing(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the tokenizer is trained and the MindRecord is half written: no trace left."""
    def half_write(path: Path, stream, sample_len: int, samples: int) -> None:
        path.write_bytes(b"partial")
        index_path_for(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prepare_module, "_write_mindrecord", half_write)
    out = tmp_path / "deep" / "er" / "out.mindrecord"
    with pytest.raises(OSError, match="No space left"):
        prepare_dataset([str(corpus)], out, SEQ, train_tokenizer_vocab=200)
    assert _tree(tmp_path) == set()
