"""``mfctl data prepare`` writes the samples MindFormers' own WikiText preprocessing writes.

The expected samples in tests/data/preprocess/ were made once with MindFormers 1.9.0's
``llama_preprocess.py --dataset_type wiki`` (tests/helpers_preprocess.py); with
MFCTL_MINDFORMERS_HOME set, one test also runs that script live on corpora it generates.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mfctl.data.encode import split_special
from mfctl.data.wikitext import clean_wikitext, is_heading, wikitext_paragraphs
from tests.helpers_preprocess import (
    CASES,
    CORPUS,
    DATA,
    LLAMA_MODEL,
    ODD_MODEL,
    mindformers_home,
    read_samples,
    run_upstream,
)

# ---------------------------------------------------------------------------------------------
# The cleaning rules, one by one (pure)


@pytest.mark.parametrize("raw, clean", [
    ("a 19th @-@ century tower", "a 19th-century tower"),
    ("1 @,@ 200 miles", "1,200 miles"),
    ("42 @.@ 5 metres", "42.5 metres"),
    ("the players ' union", "the players' union"),
    ("said : yes ; no . Then ! Why ? so , on", "said: yes; no. Then! Why? so, on"),
    ("stands ( 139 ft ) high", "stands (139 ft) high"),
    ("blocks [ each 2 t ] and { in fog }", "blocks [each 2 t] and {in fog}"),
    ('the " old " cottage', 'the "old" cottage'),
    ("by ' Sam ' Holt", "by 'Sam' Holt"),
    # Quotes pair with the next quote, across lines.
    ('a " b \n c " d', 'a "b\nc" d'),
    ("= = = = D = = = =", "==== D ===="),
    ("= = = C = = =", "=== C ==="),
    ("= = B = =", "== B =="),
    ("turns 3 ° per second", "turns 3°per second"),
    ("in N cases", "in 1 cases"),
    # Order: " , " has closed up first, so this N has no space after it any more and stays.
    ("added in N , when", "added in N, when"),
    ("the keeper 's house", "the keeper's house"),
    # WikiText pads each line with spaces; blank lines are a lone space.
    (" a . \n \n b \n", " a.\n\nb\n"),
    # The odd contraction rule rewrites to a literal class, as upstream does.
    ("x/' 5/y", "x/'[0-9]/y"),
    # Order: " . " goes before " \n", so a full stop at a line end keeps its space until then.
    ("end . \n", "end.\n"),
    ("no rule applies here", "no rule applies here"),
])
def test_clean_rule(raw: str, clean: str) -> None:
    assert clean_wikitext(raw) == clean


@pytest.mark.parametrize("paragraph, heading", [
    ("= Title =", True), ("\n== Section ==", True), (" === Sub ===\n", True),
    ("Text = more", False), ("", False), ("\n", False),
])
def test_is_heading(paragraph: str, heading: bool) -> None:
    assert is_heading(paragraph) is heading


def test_paragraphs_split_at_blank_lines_headings_dropped() -> None:
    raw = (" \n = Alpha = \n \n Alpha text . \n Second line . \n \n = = Part = = \n \n More alpha . \n"
           " \n \n")
    # Consecutive lines stay one paragraph; three trailing newlines leave a whitespace paragraph.
    assert wikitext_paragraphs(raw) == ["Alpha text.\nSecond line.", "More alpha.", "\n"]
    assert wikitext_paragraphs("") == []
    assert wikitext_paragraphs(" = Only = \n \n") == []


@pytest.mark.parametrize("text, parts", [
    ("a <unk> b", ["a ", "<unk>", " b"]),
    ("<s></s><unk>", ["<s>", "</s>", "<unk>"]),
    ("x<unk>", ["x", "<unk>"]),
    ("<pad> stays text", ["<pad> stays text"]),
    ("", []),
])
def test_split_special(text: str, parts: list[str]) -> None:
    assert split_special(text) == parts


# ---------------------------------------------------------------------------------------------
# The encoder against sentencepiece itself

sentencepiece = pytest.importorskip("sentencepiece", reason="dataset preparation needs sentencepiece (mfctl[train])")


def _sp(model: Path):
    return sentencepiece.SentencePieceProcessor(model_file=str(model))


def test_encoder_frames_and_maps_specials() -> None:
    from mfctl.data.prepare import load_encoder

    enc = load_encoder(LLAMA_MODEL)
    sp = _sp(LLAMA_MODEL)
    assert (enc.bos_id, enc.eos_id) == (1, 2)
    assert enc.encode("") == [1, 2]
    plain = "The keeper's house"
    assert enc.encode(plain) == [1, *sp.encode(plain), 2]
    # <unk> in the text is the unknown id; the text on each side is encoded on its own.
    assert enc.encode("on the <unk> coast") == [1, *sp.encode("on the "), sp.unk_id(), *sp.encode(" coast"), 2]
    assert enc.encode_all(["a", "<s>b</s>"]) == [[1, *sp.encode("a"), 2], [1, 1, *sp.encode("b"), 2, 2]]


def test_bos_eos_ids_come_from_the_model_file() -> None:
    from mfctl.data.prepare import load_encoder

    sp = _sp(ODD_MODEL)
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (3, 7, 11)
    enc = load_encoder(ODD_MODEL)
    assert enc.encode("x <unk>") == [7, *sp.encode("x "), 3, 11]


def test_model_without_bos_is_refused(tmp_path: Path) -> None:
    from mfctl.data.prepare import load_encoder
    from mfctl.errors import BadInput

    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(tmp_path / "nobos"), vocab_size=120,
        bos_id=-1, eos_id=1, unk_id=0, minloglevel=2, num_threads=1)
    with pytest.raises(BadInput, match="no beginning-of-sequence piece") as info:
        load_encoder(tmp_path / "nobos.model")
    assert str(tmp_path / "nobos.model") in str(info.value)


# ---------------------------------------------------------------------------------------------
# `mfctl data prepare` against samples MindFormers wrote


def _prepare(mfctl, corpus: Path, model: Path, seq: int, out: Path) -> list[list[int]]:
    r = mfctl("data", "prepare", "--input", str(corpus), "--tokenizer", str(model),
              "--seq-length", str(seq), "--output", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    rows = read_samples(out)
    assert summary["samples"] == len(rows)
    return rows


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_matches_upstream_samples(case: str, mfctl, tmp_path: Path) -> None:
    pytest.importorskip("mindspore", reason="writing MindRecord needs mindspore (mfctl[train])")
    expected = json.loads((DATA / f"expected_{case}.json").read_text(encoding="utf-8"))
    model, seq = CASES[case]
    assert (expected["tokenizer"], expected["seq_length"]) == (model.name, seq)
    rows = _prepare(mfctl, CORPUS, model, seq, tmp_path / f"{case}.mindrecord")
    assert len(rows) == len(expected["samples"])
    for index, (ours, theirs) in enumerate(zip(rows, expected["samples"])):
        assert ours == theirs, f"sample {index} differs"
    bos, eos = _sp(model).bos_id(), _sp(model).eos_id()
    assert rows[0][0] == bos and all(len(row) == seq + 1 for row in rows)
    if model == ODD_MODEL:
        # The model's own ids frame the paragraphs (the corpus has no literal <s>/</s>): every
        # 11 is followed by the 7 of the next paragraph, and there is one pair per paragraph,
        # less the few whose end fell in the dropped tail.
        assert (bos, eos) == (7, 11)
        stream = [t for row in rows for t in row]
        ends = [i for i, t in enumerate(stream) if t == eos]
        assert all(stream[i + 1] == bos for i in ends if i + 1 < len(stream))
        paragraphs = wikitext_paragraphs(CORPUS.read_text(encoding="utf-8"))
        assert len(paragraphs) - 2 <= len(ends) <= stream.count(bos) <= len(paragraphs)


# ---------------------------------------------------------------------------------------------
# Live: MindFormers' script and mfctl on corpora neither has seen


def generated_wikitext(seed: int, articles: int = 5) -> str:
    """A WikiText-format corpus with every artefact the rules touch, in random combinations."""
    rng = random.Random(seed)
    words = ("the", "harbour", "keeper", "of", "stone", "light", "ships", "were", "built", "road",
             "Kerran", "tower", "sailor", "café", "Senjō", "日本", "<unk>", "N", "1851", "3")
    glue = (" @-@ ", " @,@ ", " @.@ ", " , ", " ; ", " : ", " 's ", "s ' ", " ° ", " – ")

    def sentence() -> str:
        out = [rng.choice(words)]
        for _ in range(rng.randint(3, 14)):
            roll = rng.random()
            if roll < 0.25:
                out.append(rng.choice(glue).strip() or "@-@")
            elif roll < 0.32:
                open_, close = rng.choice(["()", "[]", "{}", '""', "''"])
                out.extend([open_, rng.choice(words), rng.choice(words), close])
            out.append(rng.choice(words))
        return " ".join(out) + " " + rng.choice(".?!")

    lines = [" "]
    for a in range(articles):
        lines += [f" = {rng.choice(words).title()} {a} = ", " "]
        for s in range(rng.randint(1, 3)):
            depth = rng.choice([2, 2, 3, 4])
            marks = " ".join("=" * depth)
            lines += [f" {marks} Section {s} {marks} ", " "]
            for _ in range(rng.randint(1, 4)):
                lines.append(" " + " ".join(sentence() for _ in range(rng.randint(1, 5))) + " ")
                # Mostly a blank line between paragraphs, as WikiText; sometimes none or several.
                lines += [" "] * rng.choice([1, 1, 1, 0, 2, 3])
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(mindformers_home() is None,
                    reason="set MFCTL_MINDFORMERS_HOME to a MindFormers 1.9.0 checkout to run its script")
@pytest.mark.parametrize("seed, model, seq", [(11, LLAMA_MODEL, 48), (12, ODD_MODEL, 24)])
def test_live_upstream_on_an_unseen_corpus(seed: int, model: Path, seq: int, mfctl, tmp_path: Path) -> None:
    corpus = tmp_path / "wiki.unseen.tokens"
    corpus.write_text(generated_wikitext(seed), encoding="utf-8")
    theirs = run_upstream(mindformers_home(), corpus, model, seq)  # type: ignore[arg-type]
    ours = _prepare(mfctl, corpus, model, seq, tmp_path / "ours.mindrecord")
    assert len(theirs) >= 20
    assert len(ours) == len(theirs)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"sample {index} differs"
