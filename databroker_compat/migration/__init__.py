"""Move runs from legacy databroker MongoDB databases into Tiled through TiledWriter.

The pieces, from the source to the report (each module one concept)::

    options     MigrationOptions (the job's options, the CLI's defaults), RetryPolicy
    records     LegacyRecords: the MongoDB collections, read in pages, never written
    assemble    LegacyDocuments: one run as event-model documents, in emission order
    expect      RunExpectation: what a run makes in Tiled, from counting queries
    source      LegacySource (records + documents + expectation), MongoSpec (reopen it)
    writer      TiledWriter set up for legacy data;  target: what Tiled already holds
    decide      the run decision (write / skip / rewrite / refuse), pure
    verify      compare a migrated run with its source
    worker      one partition, run by run, with retries;  executor: inline/threads/dask
    plan        the dry run;  state: the state file;  report: outcomes and the report
    job         migrate(): select, partition, run, record, report;  cli: databroker-migrate

Importing this package imports neither pymongo nor dask nor the writer; they load
when a source is opened or a job runs.

>>> from databroker_compat.migration import LegacySource, migrate   # doctest: +SKIP
>>> report = migrate(LegacySource.from_uris("mongodb://host/mds"), client)   # doctest: +SKIP
"""

from __future__ import annotations

from .connect import TiledSpec
from .job import migrate, run_job
from .options import DEFAULTS, MigrationOptions, RetryPolicy
from .report import MigrationReport, RunOutcome
from .source import LegacySource, MongoSpec

# Bound last: the function ``verify`` must shadow the submodule of the same name.
from .verify import VerificationReport, verify  # isort: skip

__all__ = [
    "DEFAULTS",
    "LegacySource",
    "MigrationOptions",
    "MigrationReport",
    "MongoSpec",
    "RetryPolicy",
    "RunOutcome",
    "TiledSpec",
    "VerificationReport",
    "migrate",
    "run_job",
    "verify",
]
