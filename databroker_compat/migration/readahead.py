"""Reading a run's documents ahead of the writer, and tallying them on the way.

:class:`ReadAhead` reads on a background thread, a bounded number of documents ahead,
so that reading MongoDB (decoding, normalising) and writing to Tiled (waiting for the
server) overlap instead of taking turns. :class:`Tee` passes documents through a
:class:`~databroker_compat.migration.verify.SourceTally`. Both forward the reader's
attributes (``warnings``, which the writer stores as the run's notes, ``fixes``,
``missing_frames``, ``inline_keys``, ``writer_settings``), so that whoever holds the
wrapper sees what the reader found.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from .verify import SourceTally

__all__ = ["ReadAhead", "Tee"]

Pair = tuple[str, dict]

#: Bytes of inline frames read ahead at most (a run whose frames are written inline).
READ_AHEAD_BYTES = 128 * 1024**2


class _Forwarding:
    """Attributes this wrapper lacks are the wrapped reader's."""

    _documents: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_documents":
            raise AttributeError(name)
        return getattr(self._documents, name)


class Tee(_Forwarding):
    """Documents passed through a ``SourceTally``, keeping the reader's ``warnings`` list.

    >>> tally = SourceTally()
    >>> [name for name, _ in Tee([("start", {"uid": "u", "time": 0.0})], tally)], tally.start["uid"]
    (['start'], 'u')
    """

    def __init__(self, documents: Iterable[Pair], tally: SourceTally) -> None:
        self._documents = documents
        self.warnings: list[str] | None = getattr(documents, "warnings", None)
        self._it = tally.tee(documents)

    def __iter__(self) -> Iterator[Pair]:
        return self._it


class ReadAhead(_Forwarding):
    """Iterate a run's documents read by a background thread, a bounded number ahead.

    At most ``depth`` documents wait in between, and for a run whose frames are written
    inline at most :data:`READ_AHEAD_BYTES` of frames, so memory stays bounded; the
    reader's ``warnings`` list is handed through (it is complete once the stop document
    has been read). ``close()`` stops the thread when the consumer gives up early.

    >>> docs = ReadAhead(iter([("start", {}), ("stop", {})]))
    >>> [name for name, _ in docs]
    ['start', 'stop']
    """

    _END = object()
    _CHUNK = 500

    def __init__(self, documents: Iterable[Pair], depth: int = 4_000) -> None:
        self._documents = documents
        self.warnings: list[str] | None = getattr(documents, "warnings", None)
        self._slots = max(depth // self._CHUNK, 1)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self._slots)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(documents,), name="migrate-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _chunk(self, documents: Iterable[Pair]) -> int:
        """Documents per chunk: fewer when the events carry inline frames (known after the first document)."""
        settings = getattr(documents, "writer_settings", None)
        frame_bytes = getattr(settings, "inline_frame_bytes", 0) or 0
        if frame_bytes <= 0:
            return self._CHUNK
        return max(1, min(self._CHUNK, READ_AHEAD_BYTES // (self._slots * frame_bytes)))

    def _read(self, documents: Iterable[Pair]) -> None:
        chunk: list[Pair] = []
        size = 0
        try:
            for pair in documents:
                if not size:
                    size = self._chunk(documents)
                chunk.append(pair)
                if len(chunk) >= size:
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(self._END)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def __iter__(self) -> Iterator[Pair]:
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader thread and drop what it read ahead."""
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=10)
