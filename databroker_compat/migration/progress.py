"""The job's progress bar: runs, runs/s and events/s on a terminal, silent elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A tqdm bar over runs, with runs/s and events/s; silent when disabled or not a TTY.

    >>> bar = Progress(3, enabled=False)
    >>> bar.update(10); bar.events
    10
    >>> bar.close()
    """

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar: Any = None
        self.events = 0
        self.t0 = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", desc="migrating", dynamic_ncols=True)

    def update(self, events: int) -> None:
        """One more run done, which wrote ``events`` events."""
        self.events += events
        if self.bar is not None:
            self.bar.update(1)
            elapsed = max(time.monotonic() - self.t0, 1e-9)
            self.bar.set_postfix(events=self.events, ev_per_s=f"{self.events / elapsed:,.0f}", refresh=False)

    def close(self) -> None:
        """Close the bar (if one is shown)."""
        if self.bar is not None:
            self.bar.close()
