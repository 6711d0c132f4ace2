"""The options of a migration job: one frozen, picklable object, and the defaults of the CLI.

:class:`MigrationOptions` is what :func:`~databroker_compat.migration.migrate` builds
from its keyword arguments and hands down to the executor and, inside each task, to
the worker; ``databroker-migrate`` takes the defaults it shows and uses from
:data:`DEFAULTS`. Every value is checked once, here: a value that cannot be used
raises :class:`~databroker_compat.exceptions.BadArgument` (a ``ValueError``) naming
the option (``err.option``) and the value (``err.value``).

>>> DEFAULTS.batch_size, DEFAULTS.workers, DEFAULTS.retry.retries
(10000, 1, 5)
>>> MigrationOptions(workers=0)
Traceback (most recent call last):
...
databroker_compat.exceptions.BadArgument: workers must be at least 1, not 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .._time import zone
from ..exceptions import BadArgument
from .frames import RootMap
from .partition import GROUP_RUNS, LARGE_RUN_EVENTS

__all__ = ["DEFAULTS", "MigrationOptions", "RetryPolicy"]


def _at_least(option: str, value: object, low: float, what: str) -> None:
    """Refuse ``value`` unless it is a number (not a bool) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise BadArgument(f"{option} must be {what}, not {value!r}.", option=option, value=value)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a run is retried after a transient failure.

    The wait before attempt ``n + 1`` is ``min(backoff_max, backoff * 2**(n-1))``
    seconds, times a random factor in [0.5, 1] so that workers that failed together do
    not come back together.

    >>> RetryPolicy(retries=3, backoff=1.0, backoff_max=4.0).delay(3, jitter=False)
    4.0
    """

    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        _at_least("retries", self.retries, 0, "a number of retries (0 or more)")
        _at_least("backoff", self.backoff, 0, "a number of seconds (0 or more)")
        _at_least("backoff_max", self.backoff_max, 0, "a number of seconds (0 or more)")

    def delay(self, attempt: int, *, jitter: bool = True) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.backoff_max, self.backoff * 2 ** max(attempt - 1, 0))
        return base * (random.uniform(0.5, 1.0) if jitter else 1.0)


#: How much array data verification reads (``--verify-data``).
VERIFY_DATA_LEVELS = ("sample", "full")


@dataclass(frozen=True)
class MigrationOptions:
    """Everything that shapes a migration job besides its source, target and selection.

    Attributes
    ----------
    batch_size : int
        Events per table write in the writer.
    workers : int
        Partitions run at the same time (1: inline, in this process).
    page_size : int
        Source uids handled per page (one size estimate per page).
    partition_runs : int
        Small runs grouped per partition.
    large_run_events : int
        A run with at least this many events is a partition of its own.
    retry : RetryPolicy
        Retries of a run after a transient failure.
    verify : bool
        Verify every run right after writing it.
    close_open_runs : bool
        Give runs without a stop document a stop with ``exit_status="unknown"``.
    overwrite : bool
        Replace runs present in the target with different content.
    dry_run : bool
        Read and check everything, write nothing.
    progress : bool
        Show a progress bar (only on a terminal).
    read_ahead : bool
        Read a run's documents on a background thread while the previous ones are written.
    timezone : str or None
        IANA zone in which ``since``/``until`` times that name no zone are read
        (``None``: this machine's local zone), by the rule of :mod:`databroker_compat._time`.
    root_map : RootMap
        Old file-system prefixes of legacy resources and where the files are now
        (``--root-map OLD=NEW``); the paths written to Tiled are the mapped ones.
    allow_missing_files : bool
        Migrate runs whose detector files are (partly) missing as *incomplete* runs and
        exit 0; by default such runs make the job exit 1.
    verify_data : str
        How much array data verification reads: ``"sample"`` (first, last and one random
        frame per resource) or ``"full"`` (every frame).
    close_streams : bool or None
        Whether the writer sends its stream-close requests (one per node it created):
        None (the default) asks each target server once and skips them only on a
        server with no streaming cache and no webhook API; True always sends them;
        False never does (no ``StreamClosed`` webhooks, no end-of-stream for websocket
        subscribers). See :mod:`~databroker_compat.migration.writing_view`.

    Examples
    --------
    >>> options = MigrationOptions(batch_size=500, overwrite=True)
    >>> options.batch_size, options.overwrite, options.workers
    (500, True, 1)
    """

    batch_size: int = 10_000
    workers: int = 1
    page_size: int = 200
    partition_runs: int = GROUP_RUNS
    large_run_events: int = LARGE_RUN_EVENTS
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify: bool = True
    close_open_runs: bool = True
    overwrite: bool = False
    dry_run: bool = False
    progress: bool = True
    read_ahead: bool = True
    timezone: str | None = None
    root_map: RootMap = field(default_factory=RootMap)
    allow_missing_files: bool = False
    verify_data: str = "sample"
    close_streams: bool | None = None

    def __post_init__(self) -> None:
        _at_least("batch_size", self.batch_size, 1, "a positive number of events")
        _at_least("workers", self.workers, 1, "at least 1")
        _at_least("page_size", self.page_size, 1, "a positive number of runs")
        _at_least("partition_runs", self.partition_runs, 1, "a positive number of runs")
        _at_least("large_run_events", self.large_run_events, 1, "a positive number of events")
        if not isinstance(self.retry, RetryPolicy):
            raise BadArgument(
                f"retry must be a RetryPolicy, not {type(self.retry).__name__}.", option="retry", value=self.retry
            )
        if not isinstance(self.root_map, RootMap):
            raise BadArgument(
                f"root_map must be a RootMap (RootMap.parse([...])), not {type(self.root_map).__name__}.",
                option="root_map", value=self.root_map,
            )
        if self.verify_data not in VERIFY_DATA_LEVELS:
            raise BadArgument(
                f"verify_data must be one of {', '.join(VERIFY_DATA_LEVELS)}, not {self.verify_data!r}.",
                option="verify_data", value=self.verify_data,
            )
        if self.close_streams is not None and not isinstance(self.close_streams, bool):
            raise BadArgument(
                f"close_streams must be True, False or None (ask the server), not {self.close_streams!r}.",
                option="close_streams", value=self.close_streams,
            )
        if self.timezone is not None:
            zone(self.timezone)  # an unknown zone raises BadTime (a ValueError) now, not mid-job


#: The default options; ``databroker-migrate`` shows and uses these.
DEFAULTS = MigrationOptions()
