"""The steps a report's single read saved: one row per rank and step, the last one saved."""

from __future__ import annotations

from mfctl.jobs.report import last_saved


def row(rank: int, step: int, loss: float) -> tuple:
    return (rank, step, 10, loss, 500.0, 30.0, 100.0 + step)


def test_rows_saved_in_order_stand_as_they_are() -> None:
    rows = [row(0, 1, 2.0), row(0, 2, 1.9), row(1, 1, 2.1), row(1, 2, 2.0)]
    assert last_saved(list(rows)) == rows


def test_a_step_saved_again_keeps_its_place_with_the_last_values() -> None:
    # Two reads' batches: rank 1's step 2 printed again (a restart over the log), then step 3.
    rows = [row(0, 1, 2.0), row(1, 1, 2.1), row(1, 2, 2.0), row(1, 2, 1.8), row(1, 3, 1.7), row(0, 2, 1.9)]
    assert last_saved(rows) == [row(0, 1, 2.0), row(1, 1, 2.1), row(1, 2, 1.8), row(1, 3, 1.7), row(0, 2, 1.9)]


def test_batches_out_of_order_without_repeats_keep_every_row() -> None:
    rows = [row(1, 1, 2.1), row(0, 1, 2.0), row(0, 2, 1.9), row(1, 2, 2.0)]
    assert last_saved(rows) == rows
