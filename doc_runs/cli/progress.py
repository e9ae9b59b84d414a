"""What `doc-runs process` shows while its runs go, and the table it prints at the end.

Progress is per document and stage: every stage appends a line to its run's progress journal
in the store as each document finishes it (doc_runs.defs.stage_records), and this reads the
new lines of each journal at every poll. On a terminal that is one rich bar per stage; with
`--progress` and stderr not a terminal, a plain line whenever the counts change (at most
once a second), which reads well in a log."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from doc_runs.core.status import STAGES
from doc_runs.core.store import DocumentStore

TABLE_WIDTH = 100


class StageCounts:
    """Which documents of ours finished which stage, read incrementally from the journals."""

    def __init__(self, store: DocumentStore, documents: Iterable[str],
                 run_ids: Iterable[str] = ()) -> None:
        self.store = store
        self.wanted = set(documents)
        self.offsets = dict.fromkeys(run_ids, 0)
        self.done: dict[str, set[str]] = {stage: set() for stage in STAGES}
        self.quarantined: dict[str, set[str]] = {stage: set() for stage in STAGES}

    def add_run(self, run_id: str) -> None:
        self.offsets.setdefault(run_id, 0)

    def read(self) -> bool:
        """Reads what the journals gained since the last call; True when a count moved."""
        moved = False
        for run_id, offset in self.offsets.items():
            entries, self.offsets[run_id] = self.store.read_progress(run_id, offset)
            for entry in entries:
                stage, key = entry.get("stage"), entry.get("document_id")
                if stage not in self.done or key not in self.wanted:
                    continue
                # A retried step writes its documents again: counted once.
                moved = moved or key not in self.done[stage]
                self.done[stage].add(key)
                if entry.get("status") == "quarantined" and not any(
                        key in self.quarantined[s] for s in STAGES):
                    self.quarantined[stage].add(key)
        return moved

    def note(self, stage: str) -> str:
        held = len(self.quarantined[stage])
        return f"{held} quarantined" if held else ""


class ProgressView:
    """Per-stage bars on a terminal, plain lines otherwise; `update` is called at every poll
    of the runs' statuses, with how many of them have finished."""

    def __init__(self, counts: StageCounts, *, live: bool, runs_total: int,
                 stream: TextIO = sys.stderr, min_interval_s: float = 1.0) -> None:
        self.counts, self.live, self.stream = counts, live, stream
        self.min_interval_s = min_interval_s
        self.total = len(counts.wanted)
        self.runs_total = runs_total
        self.runs_done = 0
        self.last_line = ""
        self.last_printed = 0.0
        self.bars: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressView:
        if self.live:
            self.bars = Progress(
                TextColumn("{task.description:<17}"), BarColumn(bar_width=30),
                MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                console=Console(file=self.stream, highlight=False),
                refresh_per_second=4,
            )
            self.bars.start()
            self.tasks["runs"] = self.bars.add_task("runs finished", total=self.runs_total,
                                                    note="")
            for stage in STAGES:
                self.tasks[stage] = self.bars.add_task(stage, total=self.total, note="")
        return self

    def update(self, runs_done: int) -> None:
        self.runs_done = runs_done
        self.counts.read()
        if self.bars is not None:
            self._draw()
        else:
            self._print_line(force=False)

    def _draw(self) -> None:
        assert self.bars is not None
        self.bars.update(self.tasks["runs"], completed=self.runs_done)
        for stage in STAGES:
            self.bars.update(self.tasks[stage], completed=len(self.counts.done[stage]),
                             note=self.counts.note(stage))

    def _print_line(self, *, force: bool) -> None:
        parts = [f"runs {self.runs_done}/{self.runs_total}"]
        for stage in STAGES:
            note = self.counts.note(stage)
            parts.append(f"{stage} {len(self.counts.done[stage])}/{self.total}"
                         + (f" ({note})" if note else ""))
        line = "progress: " + ", ".join(parts)
        now = time.monotonic()
        if line != self.last_line and (force or now - self.last_printed >= self.min_interval_s):
            print(line, file=self.stream, flush=True)
            self.last_line, self.last_printed = line, now

    def __exit__(self, *exc_info: object) -> None:
        self.counts.read()
        if self.bars is not None:
            self._draw()
            self.bars.stop()
        else:
            self._print_line(force=True)


def _fit(text: str, width: int, *, keep_end: bool = False) -> str:
    """`text` in exactly `width` terminal cells (wide characters count twice), cut with an
    ellipsis when longer: at the end, or at the start to keep a path's file name."""
    text = " ".join(text.split())
    if cell_len(text) > width:
        if keep_end:
            tail = text[::-1]
            text = "…" + set_cell_size(tail, max(width - 1, 0))[::-1].lstrip()
        else:
            text = set_cell_size(text, max(width - 1, 0)) + "…"
    return set_cell_size(text, width)


def print_outcome_table(rows: list[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """One line per input, at most 100 columns wide (narrower on a narrower terminal), and
    under a quarantined or failed document a second line with its detail, cut with an
    ellipsis where long; `--json` has everything whole."""
    width = TABLE_WIDTH
    if stream.isatty():
        width = min(width, shutil.get_terminal_size((TABLE_WIDTH, 24)).columns)
    columns = ["file", "document", "status", "reason", "pages", "chunks"]
    cells = [
        [row["path"], (row["document_id"] or "")[:10], row["status"], row["reason"] or "",
         "" if row["pages"] is None else str(row["pages"]),
         "" if row["chunks"] is None else str(row["chunks"])]
        for row in rows
    ]
    if width < 80:  # a narrow terminal: the file name matters more than the id prefix
        columns.pop(1)
        for line in cells:
            line.pop(1)
    widths = [max(cell_len(c[i]) for c in [columns, *cells]) for i in range(len(columns))]
    # The file name takes the room the other columns leave (at least 12 cells).
    gaps = 2 * (len(columns) - 1)
    widths[0] = max(min(widths[0], width - sum(widths[1:]) - gaps), 12)
    numbers = {columns.index("pages"), columns.index("chunks")}
    for line, row in zip([columns, *cells], [None, *rows], strict=True):
        parts = [cell.rjust(size) if i in numbers else _fit(cell, size, keep_end=i == 0)
                 for i, (cell, size) in enumerate(zip(line, widths, strict=True))]
        print("  ".join(parts).rstrip(), file=stream)
        if row is not None and row["detail"]:
            print("    " + _fit(row["detail"], width - 4).rstrip(), file=stream)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print("\n" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
          file=stream)
    runs = list(dict.fromkeys(r["run_id"] for r in rows if r.get("run_id")))
    if runs:
        shown = ", ".join(run[:8] for run in runs[:6])
        more = f" and {len(runs) - 6} more" if len(runs) > 6 else ""
        print(_fit(f"runs: {shown}{more} (open them under Runs in the Dagster UI)", width)
              .rstrip(), file=stream)
