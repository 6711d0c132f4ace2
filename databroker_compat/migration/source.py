"""``LegacySource``: runs read from the legacy MongoDB layouts of databroker, and how to reopen them.

:class:`LegacySource` is the record store (:class:`~.records.LegacyRecords`: selection,
sizes, records) plus the two things a migration asks of a run: its documents
(:class:`~.assemble.LegacyDocuments`) and what they make in Tiled
(:class:`~.expect.RunExpectation`). It never writes to MongoDB.

:class:`MongoSpec` is how another process opens the same source: the MongoDB URIs and
options, picklable, with secrets hidden from its ``repr``. The spec owns opening:
:meth:`LegacySource.from_uris` builds one and opens it, and a dask worker calls the same
spec to open its own connection.

>>> MongoSpec("mongodb://user:pw@host/mds")
MongoSpec('mongodb://user:***@host/mds', assets_uri=None)
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from .._redact import redact
from ..exceptions import BadArgument
from .assemble import LegacyDocuments
from .expect import RunExpectation, expect_run
from .frames import RootMap
from .records import LegacyRecords

logger = logging.getLogger(__name__)

__all__ = ["LegacySource", "MongoSpec", "mongo_database"]


def mongo_database(uri: str) -> Any:
    """A pymongo ``Database`` for a URI that names its database (``mongodb://host/mds``).

    pymongo connects lazily: nothing is sent to the server yet.

    Raises
    ------
    BadArgument
        The URI names no database (a ``ValueError``; ``err.uri`` holds it, redacted).

    >>> mongo_database("mongodb://127.0.0.1:1/")   # doctest: +SKIP
    Traceback (most recent call last):
    BadArgument: The MongoDB URI names no database; ...
    """
    import pymongo

    client: Any = pymongo.MongoClient(uri)
    try:
        return client.get_database()
    except pymongo.errors.ConfigurationError:
        raise BadArgument(
            "The MongoDB URI names no database; add it to the path, e.g. mongodb://host:27017/metadatastore",
            uri=redact(uri),
        ) from None


class LegacySource(LegacyRecords):
    """Runs stored in MongoDB by databroker v0/v1 (metadatastore, filestore, asset registry).

    Parameters
    ----------
    metadatastore : pymongo.database.Database
        The database holding ``run_start``, ``run_stop``, ``event_descriptor``, ``event``
        (any pymongo-compatible object, e.g. ``mongomock``).
    assets : pymongo.database.Database, optional
        The database holding ``resource`` and ``datum``; by default ``metadatastore``.
    name : str, optional
        A label for reports and logs; by default the database name.
    page_size : int, optional
        Events per read (keyword only; default 10,000). Memory use grows with it; with
        ``mongomock`` larger pages are faster (each read scans the collection).
    check_files : bool, optional
        Check the files of every datum (after the root map) and read the first frame of
        each resource before a run is written (keyword only; default True). Turn it off
        only when the migrating machine cannot see the detector storage that the Tiled
        server reads: then frames cannot be checked, corrected or written inline.
    root_map : RootMap, optional
        Old file-system prefixes of the resources and where the files are now (keyword
        only; ``RootMap.parse(["/GPFS/xf11id=/nsls2/data/chx/legacy"])``). Files are
        looked for, and registered in Tiled, at the mapped paths.

    Attributes
    ----------
    spec : callable or None
        How another process opens this source (a :class:`MongoSpec`, set by
        :meth:`from_uris`); None: only this process can.
    root_map : RootMap
        As given (see :meth:`set_root_map`).

    Examples
    --------
    >>> import mongomock                                            # doctest: +SKIP
    >>> source = LegacySource(mongomock.MongoClient()["mds"])        # doctest: +SKIP
    >>> for uid in source.find_run_uids(since="2017-01-01"):         # doctest: +SKIP
    ...     docs = list(source.documents(uid))
    """

    def __init__(
        self,
        metadatastore: Any,
        assets: Any = None,
        *,
        name: str | None = None,
        page_size: int = 10_000,
        check_files: bool = True,
        root_map: RootMap | None = None,
    ) -> None:
        super().__init__(metadatastore, assets, name=name, page_size=page_size)
        if root_map is not None and not isinstance(root_map, RootMap):
            raise BadArgument(
                f"root_map must be a RootMap (RootMap.parse([...])), not {type(root_map).__name__}.",
                option="root_map", value=root_map,
            )
        self.check_files = check_files
        self.root_map = root_map if root_map is not None else RootMap()
        self.spec: Any = None

    def set_root_map(self, root_map: RootMap) -> None:
        """Use ``root_map`` from now on, here and in every process that opens this source from its spec.

        >>> source.set_root_map(RootMap.parse(["/GPFS=/nsls2/legacy"]))   # doctest: +SKIP
        """
        self.root_map = root_map
        if isinstance(self.spec, MongoSpec):
            options = tuple((k, v) for k, v in self.spec.options if k != "root_map")
            self.spec = dataclasses.replace(self.spec, options=(*options, ("root_map", root_map)))

    @classmethod
    def from_uris(
        cls, metadatastore_uri: str, assets_uri: str | None = None, *, name: str | None = None, **kwargs: Any
    ) -> LegacySource:
        """Connect with pymongo; each URI must name its database (``mongodb://host/mds``).

        The source remembers the :class:`MongoSpec` it was opened from (``source.spec``),
        which worker processes of a distributed job open their own connections from.

        >>> LegacySource.from_uris("mongodb://localhost:27017/metadatastore")   # doctest: +SKIP
        """
        return MongoSpec(metadatastore_uri, assets_uri, name, tuple(sorted(kwargs.items()))).open(cls)

    def expected(self, uid: str, *, close_open_runs: bool = True) -> RunExpectation:
        """What :meth:`documents` writes for this run, computed with counting queries.

        >>> source.expected(uid).event_counts   # doctest: +SKIP
        {'primary': 5, 'baseline': 2}
        """
        return expect_run(self, uid, close_open_runs=close_open_runs)

    def documents(
        self,
        uid: str,
        *,
        close_open_runs: bool = True,
        spec_to_mimetype: dict[str, str] | None = None,
        read_frames: bool = True,
    ) -> LegacyDocuments:
        """The run as valid event-model documents, in emission order, streamed in pages.

        Order: start, descriptors, then events of all streams merged by time, each
        resource and datum just before the first event that needs it, stop last.

        Parameters
        ----------
        uid : str
            The start uid.
        close_open_runs : bool, optional
            A run with no stop document gets one with ``exit_status="unknown"``
            (default). With False it stays open: TiledWriter then writes its start and
            descriptors but *no events* (it writes events only at the stop).
        spec_to_mimetype : dict, optional
            Extra resource spec -> MIME type entries (give the same to
            :func:`~databroker_compat.migration.writer.make_writer`). Resources whose
            spec has no MIME type are not written; their frames are missing frames.
        read_frames : bool, optional
            Read the frames of keys written inline (default); a dry run does not.

        Returns
        -------
        LegacyDocuments
            An iterator of ``(name, doc)``; its ``warnings`` list fills while iterating.

        >>> docs = source.documents(uid)              # doctest: +SKIP
        >>> [name for name, _ in docs][:2]            # doctest: +SKIP
        ['start', 'descriptor']
        """
        return LegacyDocuments(
            self,
            uid,
            close_open_runs=close_open_runs,
            spec_to_mimetype=spec_to_mimetype,
            check_files=self.check_files,
            root_map=self.root_map,
            read_frames=read_frames,
        )


@dataclass(frozen=True)
class MongoSpec:
    """MongoDB URIs (each naming its database) plus ``LegacySource`` options: a source, picklable.

    Calling the spec opens the source (:meth:`open`), in whatever process it is called.

    >>> MongoSpec("mongodb://user:pw@host/mds")
    MongoSpec('mongodb://user:***@host/mds', assets_uri=None)
    """

    metadatastore_uri: str
    assets_uri: str | None = None
    name: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def open(self, cls: type[LegacySource] = LegacySource) -> LegacySource:
        """Connect and return the source, which remembers this spec (``source.spec``)."""
        mds = mongo_database(self.metadatastore_uri)
        assets = mongo_database(self.assets_uri) if self.assets_uri else None
        source = cls(mds, assets, name=self.name, **dict(self.options))
        source.spec = self
        return source

    def __call__(self) -> LegacySource:
        return self.open()

    def __repr__(self) -> str:
        assets = repr(redact(self.assets_uri)) if self.assets_uri else None
        return f"MongoSpec({redact(self.metadatastore_uri)!r}, assets_uri={assets})"
