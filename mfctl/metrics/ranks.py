"""Rank sets written the way people read them: ``ranks 0-1023``, ``ranks 3, 17, 200-207``.

An alert raised on every data-parallel rank names 1024 ranks; a list of 1024 numbers is not
something anyone reads, a few runs are. Pure, standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_ranks", "rank_label", "rank_runs"]


def rank_runs(ranks: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated ranks as (first, last) runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for r in sorted(set(ranks)):
        if runs and r == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], r)
        else:
            runs.append((r, r))
    return runs


def _run(first: int, last: int) -> str:
    if first == last:
        return str(first)
    if last == first + 1:
        return f"{first}, {last}"
    return f"{first}-{last}"


def format_ranks(ranks: Iterable[int], max_runs: int = 8) -> str:
    """``rank 3``, ``ranks 3, 4``, ``ranks 0-1023``, ``ranks 3, 17, 200-207``; more than
    ``max_runs`` runs keep the first ``max_runs - 1`` and the last: ``ranks 0, 2, 4, ..., 1022``.
    No ranks: ``no rank``."""
    runs = rank_runs(ranks)
    if not runs:
        return "no rank"
    if len(runs) == 1 and runs[0][0] == runs[0][1]:
        return f"rank {runs[0][0]}"
    if len(runs) > max(2, max_runs):
        shown = [_run(*run) for run in runs[:max(1, max_runs - 1)]] + ["...", _run(*runs[-1])]
    else:
        shown = [_run(*run) for run in runs]
    return "ranks " + ", ".join(shown)


def rank_label(ranks: Iterable[int], max_runs: int = 8) -> str:
    """``format_ranks`` with the count when there is more than one: ``ranks 0-1023 (1024)``."""
    ranks = set(ranks)
    text = format_ranks(ranks, max_runs)
    return f"{text} ({len(ranks)})" if len(ranks) > 1 else text
