"""How a raw WikiText token file becomes training text, by MindFormers' own rules.

MindFormers 1.9.0 prepares WikiText-2/103 for Llama pretraining with
``tools/dataset_preprocess/llama/llama_preprocess.py --dataset_type wiki``; a dataset mfctl writes
must hold the same samples in the same order. That script reads the whole file, rewrites the
WikiText tokenization artefacts (`` @-@ ``, spaces before punctuation, ...) with a fixed,
ordered list of string rules, splits the result at blank lines (``"\\n\\n"``) into paragraphs and
drops every paragraph whose text starts with ``=`` (article and section headings). Each remaining
paragraph, internal newlines and all, is one unit for the tokenizer.

The rules below are applied to the whole file in this exact order, because several overlap
(``"= = = ="`` must go before ``"= ="``, a space before a newline goes before a space after one,
the quote rules pair quotes across lines). Some rules look odd (the ``/' 5/`` one rewrites to a
literal ``[0-9]``); they are kept as they are because identical output is the point.

Pure: no I/O, no tokenizer; ``mfctl.data.prepare`` reads the file and encodes the paragraphs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Replace:
    """Replace every non-overlapping occurrence of ``old``, left to right (``str.replace``)."""

    old: str
    new: str

    def apply(self, text: str) -> str:
        return text.replace(self.old, self.new)


@dataclass(frozen=True)
class _Substitute:
    """Substitute a regular expression (``re.sub`` with a template)."""

    pattern: re.Pattern[str]
    template: str

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.template, text)


def _inside(open_: str, close: str) -> _Substitute:
    """Spaces just inside a bracket or quote pair go: ``( 139 ft )`` -> ``(139 ft)``.

    The content is matched lazily and may span lines; for quotes the "pair" is simply the next
    quote character, so in a file with an odd number of them the pairing shifts, as upstream.
    """
    o, c = re.escape(open_), re.escape(close)
    return _Substitute(re.compile(rf"{o}\s*([^{c}]*?)\s*{c}"), rf"{open_}\1{close}")


# The cleaning rules in upstream order. Grouped as upstream groups them; the order matters.
CLEAN_RULES: tuple[_Replace | _Substitute, ...] = (
    # Possessive plurals: "players '" -> "players'".
    _Replace("s '", "s'"),
    _Substitute(re.compile(r"/' [0-9]/"), r"/'[0-9]/"),
    # WikiText splits numbers at their separators: "1 @,@ 200" -> "1,200", "19th @-@ century".
    _Replace(" @-@ ", "-"),
    _Replace(" @,@ ", ","),
    _Replace(" @.@ ", "."),
    # No space before punctuation.
    _Replace(" : ", ": "),
    _Replace(" ; ", "; "),
    _Replace(" . ", ". "),
    _Replace(" ! ", "! "),
    _Replace(" ? ", "? "),
    _Replace(" , ", ", "),
    # No space inside brackets and quotes.
    _inside("(", ")"),
    _inside("[", "]"),
    _inside("{", "}"),
    _inside('"', '"'),
    _inside("'", "'"),
    # Heading marks close up: "= = Section = =" -> "== Section ==" (deepest first).
    _Replace("= = = =", "===="),
    _Replace("= = =", "==="),
    _Replace("= =", "=="),
    _Replace(" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    # WikiText pads every line with a space on each side (blank lines are a lone space).
    _Replace(" \n", "\n"),
    _Replace("\n ", "\n"),
    # A lone N stands for a number in the Penn-treebank-style text.
    _Replace(" N ", " 1 "),
    _Replace(" 's", "'s"),
)

PARAGRAPH_BREAK = "\n\n"


def clean_wikitext(text: str) -> str:
    """``text`` (a whole WikiText file) after every cleaning rule, in order."""
    for rule in CLEAN_RULES:
        text = rule.apply(text)
    return text


def is_heading(paragraph: str) -> bool:
    """A heading paragraph (`` = Title = ``, ``== Section ==``): its text starts with ``=``."""
    return paragraph.strip().startswith("=")


def wikitext_paragraphs(text: str) -> list[str]:
    """The paragraphs of a whole WikiText file that are tokenized, in file order.

    The cleaned text is split at every ``"\\n\\n"``. Empty pieces and headings are dropped; a
    piece that is only whitespace (three newlines in a row leave one ``"\\n"``) is kept, because
    upstream keeps it and it still becomes BOS + EOS in the token stream.
    """
    return [p for p in clean_wikitext(text).split(PARAGRAPH_BREAK) if p and not is_heading(p)]
