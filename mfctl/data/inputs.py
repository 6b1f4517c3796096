"""The input files of ``mfctl data prepare``: glob patterns to files, files to the texts to encode.

WikiText token files, JSONL (``{"text": ...}`` per line) and Parquet (a ``text`` column); every
bad input is refused with the file (and line or row) and what to do.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mfctl.data.wikitext import wikitext_paragraphs
from mfctl.errors import BadInput


def resolve_inputs(patterns: Sequence[str]) -> list[Path]:
    """The files the glob patterns match, in order, without duplicates.

    A pattern that matches nothing, or names a directory, is an error: a silently skipped
    input would train on less data than the user thinks.
    """
    if not patterns:
        raise BadInput("no input files: give at least one file or glob pattern")
    found: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            if glob.has_magic(pattern):
                raise BadInput(f"{pattern}: the pattern matches no file; check the path")
            raise BadInput(f"{pattern}: no such file; check the path")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                raise BadInput(f"{path}: is a directory; give the text files in it (e.g. '{path}/*')")
            resolved = path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(path)
    return found


def read_documents(files: Sequence[Path]) -> Iterator[str]:
    """The texts to encode, file by file, by format.

    ``.jsonl``/``.json``/``.parquet``: each non-blank ``text``, as it is. Anything else is a WikiText
    token file: its paragraphs by MindFormers' wiki rules (cleaned, headings dropped).
    """
    for path in files:
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            yield from _read_jsonl(path)
        elif suffix == ".parquet":
            yield from _read_parquet(path)
        else:
            yield from wikitext_paragraphs(_read_text(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}") from None


def _read_jsonl(path: Path) -> Iterator[str]:
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}:{lineno}: not valid JSON ({e.msg}); one JSON object per line") from None
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise BadInput(f"{path}:{lineno}: no 'text' string field; each line needs {{\"text\": \"...\"}}")
        if text.strip():
            yield text


def _read_parquet(path: Path) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BadInput(
            f"{path}: reading Parquet needs pyarrow; pip install pyarrow (or give .jsonl)"
        ) from None
    try:
        table = pq.read_table(path, columns=["text"])
    except KeyError:
        raise BadInput(f"{path}: no 'text' column; the Parquet file needs a string column named text") from None
    except Exception as e:  # pyarrow raises its own ArrowInvalid/OSError family
        if "text" in str(e) and ("field" in str(e).lower() or "column" in str(e).lower()):
            raise BadInput(f"{path}: no 'text' column; the Parquet file needs a string column named text") from None
        raise BadInput(f"{path}: not a readable Parquet file ({e})") from None
    for row, text in enumerate(table.column("text").to_pylist()):
        if text is None:
            continue
        if not isinstance(text, str):
            raise BadInput(f"{path}: row {row}: 'text' is {type(text).__name__}, not a string")
        if text.strip():
            yield text
