"""Measuring: one cell (time, requests, peak memory, answer or error) per operation and side.

Wall time is the median of ``repeat`` calls after a warm-up for the quick operations, the
one call for the heavy ones (``repeat`` 1); the HTTP requests are those of the first call
(an httpx request hook on the side's own client); the peak of Python allocations is that
of a separate call under tracemalloc, so tracing does not slow the timed ones. A side
that raises gets its error in the cell: nothing is skipped.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from _common import Requests, median_time, peak_memory

if TYPE_CHECKING:
    from .operations import Operation, Side

SIDES = ("ours", "raw", "db2")
SIDE_TITLES = {"ours": "databroker-compat", "raw": "raw Tiled", "db2": "databroker 2.x"}


@dataclass
class Cell:
    """What one side did for one operation."""

    seconds: float | None = None
    requests: int | None = None
    peak: int | None = None
    answer: Any = None
    error: str | None = None
    differs: bool = False


@dataclass
class Row:
    """One operation on every side; ``common``: the seconds a ratio is taken over, when not ``seconds``."""

    label: str
    cells: dict[str, Cell] = field(default_factory=dict)
    note: str = ""
    common: dict[str, float] | None = None


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 160 characters of message."""
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def measure(fn: Callable[[], Any], client, repeat: int) -> Cell:
    """Time (median of ``repeat`` after a warm-up, or one call if ``repeat`` is 1), requests, peak memory."""
    cell = Cell()
    try:
        with Requests(client) as counter:
            t = time.perf_counter()
            cell.answer = fn()
            first = time.perf_counter() - t
        cell.requests = counter.count
        cell.seconds = first if repeat <= 1 else median_time(fn, repeat)
        with peak_memory() as peak:
            fn()
        cell.peak = peak[0]
    except Exception as exc:  # reported in the table, never skipped
        cell.error = describe_error(exc)
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
    return cell


def compare(row: Row) -> None:
    """Marks the cells of raw and db2 whose answer is not ours."""
    reference = row.cells["ours"]
    for side in ("raw", "db2"):
        cell = row.cells[side]
        if cell.error is None and reference.error is None and cell.answer != reference.answer:
            cell.differs = True


def measure_all(sides: Sequence[Side], operations: Sequence[Operation], repeats: dict[str, int]) -> list[Row]:
    """Every operation on every side, side after side in the order given; one row per operation."""
    rows = [Row(op.label.format(**vars(sides[0].targets)), note=op.note.format(**vars(sides[0].targets)))
            for op in operations]
    for side in sides:
        print(f"-- {SIDE_TITLES[side.name]}", flush=True)
        for row, op in zip(rows, operations, strict=True):
            fn = getattr(op, side.name)
            row.cells[side.name] = cell = measure(functools.partial(fn, side), side.client, repeats[op.repeat])
            shown = "-" if cell.seconds is None else f"{cell.seconds:9.4f} s"
            print(f"  {row.label:<48} {shown}{'  ' + cell.error if cell.error else ''}", flush=True)
    for row in rows:
        compare(row)
    return rows


def answered(row: Row, side: str) -> bool:
    """Did ``side`` answer, and as ours did?"""
    return row.cells[side].error is None and not row.cells[side].differs


def search_summary(search_rows: list[Row]) -> Row:
    """One row for all the searches: sums over those each side answered as ours did."""
    n = len(search_rows)
    summary = Row(f"{n} typical searches (sum)")
    for side in SIDES:
        good = [r for r in search_rows if answered(r, side)]
        cell = Cell(seconds=sum(r.cells[side].seconds for r in good) if good else None,
                    requests=sum(r.cells[side].requests for r in good),
                    peak=max((r.cells[side].peak for r in good), default=0), answer=len(good))
        if len(good) < n:
            cell.error = (f"{n - len(good)} of {n} not answered or answered differently: "
                          + ", ".join(r.label for r in search_rows if not answered(r, side)))
        summary.cells[side] = cell
    both = [r for r in search_rows if answered(r, "ours") and answered(r, "db2")]
    summary.common = {"ours": sum(r.cells["ours"].seconds for r in both),
                      "db2": sum(r.cells["db2"].seconds for r in both)}
    summary.note = (f"sums over the searches each side answered as ours did; the ours/db2 ratio is over the "
                    f"{len(both)} both answered")
    return summary
