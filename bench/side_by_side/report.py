"""The report: the operations table, the notes and the searches table, as text and markdown.

``report()`` is what goes between the ``run_all`` markers of ``docs/performance.md``
(``write_docs``); ``plain()`` prints the same tables on the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import machine

from .measure import SIDE_TITLES, SIDES, Cell, Row

BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"


# -- cells --------------------------------------------------------------------------------


def fmt_seconds(cell: Cell) -> str:
    if cell.error and cell.seconds is None:
        return "cannot"
    if cell.differs:
        return "differs"
    value = cell.seconds
    text = f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    return text + ("*" if cell.error else "")


def ratio(a: Cell, b: Cell, a_seconds: float | None = None, b_seconds: float | None = None) -> str:
    a_s = a_seconds if a_seconds is not None else a.seconds
    b_s = b_seconds if b_seconds is not None else b.seconds
    if a.error and a.seconds is None or b.seconds is None or b.differs or a_s is None or not b_s:
        return "-"
    return f"{a_s / b_s:.2f}"


def fmt_count(cell: Cell, attr: str) -> str:
    value = getattr(cell, attr)
    if value is None or (cell.error and cell.seconds is None):
        return "-"
    return f"{value / 2**20:.1f}" if attr == "peak" else str(value)


def per_side(cells: dict[str, Cell], attr: str) -> str:
    """``ours/raw/db2`` of one count (``requests`` or ``peak``)."""
    return "/".join(fmt_count(cells[s], attr) for s in SIDES)


# -- tables -------------------------------------------------------------------------------


def table(rows: list[Row]) -> list[list[str]]:
    out = [["operation", "ours", "raw Tiled", "databroker 2.x", "ours/raw", "ours/db2",
            "requests ours/raw/db2", "peak MiB ours/raw/db2"]]
    for row in rows:
        c = row.cells
        if row.common:
            r2 = ratio(c["ours"], c["db2"], row.common["ours"], row.common["db2"])
        else:
            r2 = ratio(c["ours"], c["db2"])
        out.append([row.label, fmt_seconds(c["ours"]), fmt_seconds(c["raw"]), fmt_seconds(c["db2"]),
                    ratio(c["ours"], c["raw"]), r2, per_side(c, "requests"), per_side(c, "peak")])
    return out


def search_table(search_rows: list[Row]) -> list[list[str]]:
    out = [["search", "matches", "ours", "raw Tiled", "databroker 2.x", "ours/raw", "ours/db2",
            "requests ours/raw/db2"]]
    for row in search_rows:
        c = row.cells
        matches = len(c["ours"].answer) if c["ours"].error is None else "-"
        out.append([row.label, str(matches), fmt_seconds(c["ours"]), fmt_seconds(c["raw"]), fmt_seconds(c["db2"]),
                    ratio(c["ours"], c["raw"]), ratio(c["ours"], c["db2"]), per_side(c, "requests")])
    return out


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = (cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in rows[0]) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(lines)


# -- notes --------------------------------------------------------------------------------


def short(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} items"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def side_notes(row: Row, title: str, differs: Callable[[Any, Any], str]) -> Iterator[str]:
    """A line for every side of ``row`` that raised or answered otherwise (``differs(its answer, ours)``)."""
    for side in SIDES:
        cell = row.cells[side]
        if cell.error:
            yield f"{title} — {SIDE_TITLES[side]}: {cell.error}"
        elif cell.differs:
            yield f"{title} — {SIDE_TITLES[side]} {differs(cell.answer, row.cells['ours'].answer)}"


def answered_otherwise(answer: Any, ours: Any) -> str:
    return f"answered {short(answer)}, ours {short(ours)}"


def found_otherwise(answer: list, ours: list) -> str:
    return f"found {len(answer)} runs, ours {len(ours)}"


def notes(rows: list[Row], search_rows: list[Row]) -> list[str]:
    """The errors, the other answers and the notes of every row, one line each."""
    lines = []
    for row in rows:
        lines += side_notes(row, row.label, answered_otherwise)
        if row.note:
            lines.append(f"{row.label}: {row.note}")
    for row in search_rows:
        lines += side_notes(row, f"search {row.label}", found_otherwise)
    return lines


# -- the report ---------------------------------------------------------------------------


def versions() -> str:
    from importlib.metadata import version

    names = ["databroker-compat", "databroker", "tiled", "bluesky-tiled-plugins", "event-model", "mongomock"]
    return ", ".join(f"{n} {version(n)}" for n in names)


def sizes(args) -> str:
    return (f"{args.small_runs:,} small runs (the newest {min(args.small_runs, args.with_events)} with "
            f"{args.small_events} events, the others start and stop only), "
            f"one {args.long_events:,}-event run, "
            f"one {args.frames:,}-frame {args.frame_size}x{args.frame_size} uint16 image run; Mongo archive "
            f"{args.mongo_runs} runs x {args.mongo_events:,} events")


def report(rows: list[Row], search_rows: list[Row], args, command: str, elapsed: float) -> str:
    """The markdown that ``write_docs`` puts between the markers."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Command: `{command}` ({when}, {elapsed / 60:.1f} min in all)",
        "",
        f"Machine: {machine()}",
        "",
        f"Versions: {versions()}",
        "",
        f"Catalog: {sizes(args)}. Quick operations: median of {args.repeat} calls after a warm-up "
        f"(searches: {args.search_repeat}); heavy ones: one call.",
        "",
        markdown(table(rows)),
        "",
        "Times: `cannot` = the side raised (see the notes); `differs` = it answered, "
        "but not what ours and the written data say; `*` = a sum over part of the searches. "
        "Ratios below 1 mean ours is faster. "
        "Peak memory: tracemalloc peak of Python allocations in the client process during one call.",
        "",
        "Notes (every error is the one the side raised):",
        "",
        *[f"- {line}" for line in notes(rows, search_rows)],
        "",
        "The searches one by one:",
        "",
        markdown(search_table(search_rows)),
    ]
    return "\n".join(parts)


def print_tables(rows: list[Row], search_rows: list[Row]) -> None:
    """The tables and notes on the terminal."""
    print()
    print(plain(table(rows)))
    print()
    for line in notes(rows, search_rows):
        print(f"- {line}")
    print()
    print(plain(search_table(search_rows)))


def write_docs(path: Path, text: str) -> None:
    """Put ``text`` between the markers in ``path`` (markers and text are appended when missing)."""
    current = path.read_text() if path.exists() else ""
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    else:
        path.write_text(f"{current}\n{BEGIN}\n{text}\n{END}\n")
    print(f"table written into {path}")
