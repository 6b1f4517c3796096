"""A real English corpus that needs no network: Python's own reference documentation.

CPython ships the text of its language reference topics (``pydoc_data.topics``) for ``help()``.
It is about 470 000 characters of edited prose and grammar, enough to train a ~1000-piece
tokenizer and a tiny Llama for a few hundred steps, and it is present on every machine that has
Python. We write it in the raw WikiText layout (`` = Title = `` headings, `` = = Section = = ``
subheadings, one paragraph per line, blank lines between) so it goes through the same reader as
``wiki.train.tokens`` from WikiText-2/103.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# reStructuredText-style underlines used in the topics, mapped to WikiText heading depth.
_UNDERLINE_DEPTH = {"*": 1, "=": 2, "-": 3, "~": 4}
_SPACES = re.compile(r"\s+")
# A list item inside an indented block: "* text", "- text", "1. text".
_BULLET = re.compile(r"^( *)([*-]|\d+\.) +")


def _is_underline(line: str, title: str) -> bool:
    stripped = line.rstrip()
    return (
        len(stripped) >= 3
        and len(set(stripped)) == 1
        and stripped[0] in _UNDERLINE_DEPTH
        and bool(title.strip())
        and len(stripped) >= len(title.rstrip()) - 2
    )


def _is_prose_run(lines: list[str], start: int, indent: int) -> bool:
    """Whether the run of lines at ``indent`` starting at ``start`` reads as wrapped prose.

    Wrapped prose fills its lines (the documentation wraps at ~70 columns) and starts with a
    capital letter; code and grammar lines are short and ragged.
    """
    run: list[str] = []
    for line in lines[start:]:
        if not line.strip() or len(line) - len(line.lstrip(" ")) != indent:
            break
        run.append(line.strip())
    if len(run) < 2 or not run[0][:1].isupper():
        return False
    return all(len(line) + indent >= 55 for line in run[:-1])


def _heading(title: str, depth: int) -> str:
    marks = " ".join("=" * depth)
    return f" {marks} {_SPACES.sub(' ', title).strip()} {marks} "


def topic_to_wikitext(text: str) -> list[str]:
    """One pydoc topic as WikiText lines: headings, then each paragraph folded onto one line.

    Indented blocks (grammar rules and code examples) keep their own lines so that the text
    stays readable; prose lines of one paragraph are joined with single spaces.
    """
    lines = text.splitlines()
    out: list[str] = []
    paragraph: list[str] = []
    # Indent of the text of the list item being folded, or None outside a list item.
    item_indent: int | None = None

    def flush() -> None:
        if paragraph:
            out.append(" " + " ".join(paragraph) + " ")
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _is_underline(nxt, line):
            flush()
            depth = _UNDERLINE_DEPTH[nxt.strip()[0]]
            out.extend(([""] if out and out[-1] else []) + [_heading(line, depth), ""])
            i += 2
            continue
        indent = len(line) - len(line.lstrip(" "))
        bullet = _BULLET.match(line)
        if not line.strip():
            # A list item may go on with a further paragraph at the same indent: keep item_indent.
            flush()
            # A blank line between paragraphs, as WikiText has: MindFormers' wiki preprocessing
            # frames each paragraph with BOS/EOS, so paragraphs must not run together.
            if out and out[-1]:
                out.append("")
        elif bullet:
            # A list item is prose: its continuation lines are folded into it.
            flush()
            item_indent = bullet.end()
            paragraph.append(_SPACES.sub(" ", line).strip())
        elif item_indent is not None and indent == item_indent:
            paragraph.append(_SPACES.sub(" ", line).strip())
        elif indent and _is_prose_run(lines, i, indent):
            # An indented paragraph (a note, a nested list item's text): fold it like prose.
            if not paragraph:
                item_indent = indent
            paragraph.append(_SPACES.sub(" ", line).strip())
        elif indent:
            # Code or grammar: one line each, whitespace squeezed (WikiText has no indentation).
            flush()
            item_indent = None
            out.append(" " + _SPACES.sub(" ", line).strip() + " ")
        else:
            item_indent = None
            paragraph.append(_SPACES.sub(" ", line).strip())
        i += 1
    flush()
    return out


def pydoc_wikitext() -> str:
    """The whole corpus as one WikiText string (deterministic: topics in sorted order)."""
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        body = topic_to_wikitext(topics[key])
        if not any(line.startswith(" = ") and not line.startswith(" = =") for line in body):
            # A topic without its own title still becomes a separate article.
            body = ["", _heading(key, 1), "", *body]
        out.extend(body)
    # WikiText files put a lone space on blank lines; we keep them truly empty, which readers accept.
    return "\n".join(out).lstrip("\n") + "\n"


def write_pydoc_corpus(path: Path) -> int:
    """Write the pydoc documentation corpus to ``path`` in WikiText format.

    Returns the number of articles (top-level `` = Title = `` headings) written. The file is
    written to a temporary name beside ``path`` and renamed, so a failure leaves nothing behind.
    """
    path = Path(path)
    text = pydoc_wikitext()
    articles = sum(
        1 for line in text.splitlines() if line.startswith(" = ") and not line.startswith(" = =")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return articles
