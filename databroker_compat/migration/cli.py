"""The ``databroker-migrate`` command: ``run`` a migration job, ``verify`` one.

Options can come from a YAML job file (``--config``); options given on the command line
win. The defaults are those of :class:`~databroker_compat.migration.options.MigrationOptions`.
The Tiled API key comes from ``--api-key`` or the ``TILED_API_KEY`` environment
variable and is never printed or logged; MongoDB passwords are masked in every message.

Exit status (:data:`EXIT_OK`, :data:`EXIT_RUNS`, :data:`EXIT_USAGE`): 0 when every
selected run is in the target and verified (for ``--dry-run``: would be); 1 when a run
failed, did not verify, or is incomplete (some events without their frames) unless
``--allow-missing-files``; 2 for usage and configuration errors (one line on stderr, no
traceback). ``verify`` follows the same rules.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from .._redact import redact
from .._time import to_timestamp, zone
from ..config import mongo_sources
from ..exceptions import ConfigError, ConfigNotFound
from .frames import RootMap
from .job import run_job
from .options import DEFAULTS, VERIFY_DATA_LEVELS, MigrationOptions, RetryPolicy
from .source import LegacySource
from .verify import verify

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Migrate runs from legacy databroker MongoDB databases into Tiled through TiledWriter.",
    no_args_is_help=True,
    add_completion=False,
)

#: Exit status: every selected run is in the target (or would be) and verified.
EXIT_OK = 0
#: Exit status: a run failed, did not verify, or is incomplete (without --allow-missing-files).
EXIT_RUNS = 1
#: Exit status: usage or configuration error.
EXIT_USAGE = 2

# Keys a job file may hold (same names as the options, with underscores).
CONFIG_KEYS = {
    "root_map",
    "allow_missing_files",
    "verify_data",
    "close_streams",
    "metadatastore_uri",
    "assets_uri",
    "tiled_uri",
    "since",
    "until",
    "timezone",
    "query",
    "batch_size",
    "workers",
    "dry_run",
    "verify",
    "progress",
    "state",
    "report",
    "close_open_runs",
    "overwrite",
    "page_size",
    "scheduler",
    "also_served_by",
    "retries",
    "partition_runs",
}


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _MigrateHandler(logging.StreamHandler):
    """The stderr handler this command installs (one at a time)."""


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    # One handler of ours at a time, also when the command runs several times in one process.
    for old in [h for h in root.handlers if isinstance(h, _MigrateHandler)]:
        root.removeHandler(old)
    handler = _MigrateHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # httpx logs every request URL at INFO; a URL may carry an api_key parameter.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail(message: str) -> NoReturn:
    typer.echo(f"databroker-migrate: {redact(message)}", err=True)
    raise typer.Exit(EXIT_USAGE)


def load_config(path: Optional[Path]) -> dict[str, Any]:
    """Read a YAML job file into option names; unknown keys are an error.

    The file may nest the MongoDB URIs under ``source:`` and the Tiled URI under
    ``target:`` (see ``migration/job.example.yaml``).

    >>> load_config(None)
    {}
    """
    if path is None:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        _fail(f"cannot read the job file {path}: {err}")
    if not isinstance(raw, dict):
        _fail(f"the job file {path} must hold a mapping of options, not {type(raw).__name__}")
    config: dict[str, Any] = {}
    source = raw.pop("source", None) or {}
    target = raw.pop("target", None) or {}
    if "metadatastore" in source:
        config["metadatastore_uri"] = source.pop("metadatastore")
    if "assets" in source:
        config["assets_uri"] = source.pop("assets")
    if "uri" in target:
        config["tiled_uri"] = target.pop("uri")
    if "api_key" in target or "api_key" in raw:
        _fail("do not put the Tiled API key in the job file; set the TILED_API_KEY environment variable")
    leftovers = [f"source.{k}" for k in source] + [f"target.{k}" for k in target]
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key not in CONFIG_KEYS:
            leftovers.append(key)
        else:
            config[key] = value
    if leftovers:
        _fail(f"unknown keys in the job file {path}: {sorted(leftovers)}; known: {sorted(CONFIG_KEYS)}")
    return config


def _sources_from_config(name_or_path: Optional[str]) -> dict[str, Any]:
    """The MongoDB URIs, time zone and root map a v1 or intake configuration names (``--from-config``), as job options."""
    if not name_or_path:
        return {}
    try:
        found = mongo_sources(name_or_path)
    except (ConfigError, ConfigNotFound) as err:
        _fail(f"--from-config {name_or_path}: {err}")
    if found.get("layout") != "mongo_normalized":
        _fail(f"--from-config {name_or_path}: the {found.get('layout')} layout is not supported; only mongo_normalized")
    logger.info("--from-config %s: %s", name_or_path, found["path"])
    options = {"metadatastore_uri": found["metadatastore_uri"], "assets_uri": found["assets_uri"]}
    if found.get("timezone"):
        # The zone v1 read this deployment's since/until in; --timezone and the job file win.
        options["timezone"] = found["timezone"]
    if found.get("root_map"):
        # Where v1 found this deployment's files; --root-map and the job file's root_map win.
        options["root_map"] = found["root_map"]
    return options


def _root_map(cli_value: Optional[list[str]], config: dict[str, Any]) -> RootMap:
    """The job's root map: ``--root-map`` entries, else the job file's, else the v1 configuration's.

    >>> _root_map(["/GPFS=/nsls2/legacy"], {"root_map": {"/a": "/b"}}).pairs
    (('/GPFS', '/nsls2/legacy'),)
    """
    if cli_value:
        return RootMap.parse(cli_value)
    value = config.get("root_map")
    if value is not None and not isinstance(value, (dict, list)):
        raise ValueError(f"root_map must be a mapping {{OLD: NEW}} or a list of 'OLD=NEW', not {value!r}")
    return RootMap.parse(value)


def _pick(cli_value: Any, config: dict[str, Any], key: str, default: Any) -> Any:
    if cli_value is not None:
        return cli_value
    return config.get(key, default)


def _connect(
    metadatastore_uri: Optional[str], assets_uri: Optional[str], tiled_uri: Optional[str], api_key: Optional[str]
) -> tuple[LegacySource, Any]:
    from tiled.client import from_uri

    if not metadatastore_uri:
        _fail("give the legacy database with --metadatastore-uri (or source.metadatastore in --config)")
    if not tiled_uri:
        _fail("give the target with --tiled-uri (or target.uri in --config)")
    logger.info("Reading %s%s", redact(metadatastore_uri), f" and assets from {redact(assets_uri)}" if assets_uri else "")
    try:
        source = LegacySource.from_uris(metadatastore_uri, assets_uri, name=redact(metadatastore_uri))
    except Exception as err:  # bad URI, unreachable server, not a databroker database
        _fail(f"cannot read the legacy database {metadatastore_uri}: {err}")
    logger.info("Writing to %s", redact(tiled_uri))
    try:
        client = from_uri(tiled_uri, api_key=api_key) if api_key else from_uri(tiled_uri)
    except Exception as err:
        _fail(f"cannot open the Tiled target {tiled_uri}: {err}")
    return source, client


_MDS = typer.Option("--metadatastore-uri", "--mongo-uri", help="mongodb:// URI of the run database (metadatastore).")
_ASSETS = typer.Option("--assets-uri", help="mongodb:// URI of the asset registry, if separate.")
_TILED = typer.Option("--tiled-uri", help="URI of the Tiled container to write into.")
_KEY = typer.Option("--api-key", envvar="TILED_API_KEY", show_default=False, show_envvar=True, help="Tiled API key (better: the TILED_API_KEY environment variable).")
_CONFIG = typer.Option("--config", "-c", help="YAML job file; command-line options win.")
_FROM_CONFIG = typer.Option("--from-config", help="Take the MongoDB URIs (and the time zone) from a databroker v1 configuration (name or YAML file) or an intake catalog YAML; --config and command-line options win.")
_SINCE = typer.Option("--since", help="Only runs started at or after this time, read as db(since=...) reads it: 2019, 2019-01, 2019-01-01, '2019-01-01 12:00', ISO 8601 (with a zone, or in --timezone), or epoch seconds.")
_UNTIL = typer.Option("--until", help="Only runs started before this time (same formats as --since).")
_TIMEZONE = typer.Option("--timezone", help="IANA time zone (e.g. America/New_York) of --since/--until times that name none [this machine's local zone, or the zone of --from-config's configuration].")
_QUERY = typer.Option("--query", help='A Mongo query on start documents, as JSON: \'{"beamline_id": "CSX"}\'.')
_VERBOSE = typer.Option("--verbose", "-v", help="Log progress (secrets masked).")
_ROOT_MAP = typer.Option("--root-map", help="OLD=NEW: resources under the path prefix OLD have their files under NEW now (repeatable; first match wins). The paths written to Tiled are the mapped ones. Overrides root_map: of the job file and of --from-config's configuration.")
_ALLOW_MISSING = typer.Option("--allow-missing-files/--no-allow-missing-files", help="Accept runs whose events arrived without some frames (files, datums or resources missing): exit 0, the runs listed as incomplete [off: exit 1].")


def _query(value: Any) -> Optional[dict[str, Any]]:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        _fail(f"--query must be a JSON object: {err}")
    if not isinstance(parsed, dict):
        _fail("--query must be a JSON object")
    return parsed


def _times(since: Any, until: Any, timezone: Optional[str]) -> None:
    """Refuse a --since/--until/--timezone that cannot be read, before connecting anywhere."""
    try:
        if timezone is not None:
            zone(timezone)
        for name, value in (("--since", since), ("--until", until)):
            if value is not None:
                to_timestamp(value, timezone, name=name)
    except ValueError as err:
        _fail(str(err))


@app.command("run")
def run_command(
    config_path: Annotated[Optional[Path], _CONFIG] = None,
    from_config: Annotated[Optional[str], _FROM_CONFIG] = None,
    metadatastore_uri: Annotated[Optional[str], _MDS] = None,
    assets_uri: Annotated[Optional[str], _ASSETS] = None,
    tiled_uri: Annotated[Optional[str], _TILED] = None,
    api_key: Annotated[Optional[str], _KEY] = None,
    since: Annotated[Optional[str], _SINCE] = None,
    until: Annotated[Optional[str], _UNTIL] = None,
    timezone: Annotated[Optional[str], _TIMEZONE] = None,
    query: Annotated[Optional[str], _QUERY] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help=f"Events per table write [{DEFAULTS.batch_size}].")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help=f"Worker processes of a local dask cluster [{DEFAULTS.workers}: no cluster]; more only for PostgreSQL-backed servers.")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running dask.distributed scheduler (tcp://host:8786) to run the job on.")] = None,
    also_served_by: Annotated[Optional[list[str]], typer.Option("--also-served-by", help="Base URI of another Tiled server process on the same catalog (repeatable); partitions are spread over all.")] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help=f"Retries of a run after a transient failure (5xx, server away) [{DEFAULTS.retry.retries}].")] = None,
    partition_runs: Annotated[Optional[int], typer.Option("--partition-runs", help=f"Small runs grouped per partition [{DEFAULTS.partition_runs}].")] = None,
    dry_run: Annotated[Optional[bool], typer.Option("--dry-run/--no-dry-run", help="Check everything, write nothing.")] = None,
    verify_runs: Annotated[Optional[bool], typer.Option("--verify/--no-verify", help=f"Verify the written runs at the end [{'on' if DEFAULTS.verify else 'off'}].")] = None,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help=f"Progress bar on a terminal [{'on' if DEFAULTS.progress else 'off'}].")] = None,
    close_open_runs: Annotated[Optional[bool], typer.Option("--close-open-runs/--leave-open-runs", help=f"Give runs without a stop document an exit_status='unknown' stop [{'on' if DEFAULTS.close_open_runs else 'off'}].")] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite/--no-overwrite", help=f"Replace runs present in Tiled with different content [{'on' if DEFAULTS.overwrite else 'off'}].")] = None,
    root_map: Annotated[Optional[list[str]], _ROOT_MAP] = None,
    allow_missing_files: Annotated[Optional[bool], _ALLOW_MISSING] = None,
    verify_data: Annotated[Optional[str], typer.Option("--verify-data", help=f"How much array data verification reads: {' or '.join(VERIFY_DATA_LEVELS)} [{DEFAULTS.verify_data}].")] = None,
    close_streams: Annotated[Optional[bool], typer.Option("--close-streams/--no-close-streams", help="Send the writer's stream-close requests [ask the server: skipped only where it has no streaming cache and no webhook API]; --no-close-streams also skips StreamClosed webhooks.")] = None,
    state: Annotated[Optional[Path], typer.Option("--state", help="State file for resuming [databroker-migrate-state.jsonl].")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="JSON report path [databroker-migrate-report.json].")] = None,
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Migrate the selected runs (resumable: run the same command again after an interruption)."""
    _setup_logging(verbose)
    config = {**_sources_from_config(from_config), **load_config(config_path)}
    base = config_path.parent if config_path is not None else Path(".")
    # Every option is checked before anything is opened: a bad one is exit 2, one line.
    try:
        options = MigrationOptions(
            batch_size=int(_pick(batch_size, config, "batch_size", DEFAULTS.batch_size)),
            workers=int(_pick(workers, config, "workers", DEFAULTS.workers)),
            page_size=int(config.get("page_size", DEFAULTS.page_size)),
            partition_runs=int(_pick(partition_runs, config, "partition_runs", DEFAULTS.partition_runs)),
            retry=RetryPolicy(retries=int(_pick(retries, config, "retries", DEFAULTS.retry.retries))),
            verify=bool(_pick(verify_runs, config, "verify", DEFAULTS.verify)),
            close_open_runs=bool(_pick(close_open_runs, config, "close_open_runs", DEFAULTS.close_open_runs)),
            overwrite=bool(_pick(overwrite, config, "overwrite", DEFAULTS.overwrite)),
            dry_run=bool(_pick(dry_run, config, "dry_run", DEFAULTS.dry_run)),
            progress=bool(_pick(progress, config, "progress", DEFAULTS.progress)),
            timezone=_pick(timezone, config, "timezone", DEFAULTS.timezone),
            root_map=_root_map(root_map, config),
            allow_missing_files=bool(_pick(allow_missing_files, config, "allow_missing_files", DEFAULTS.allow_missing_files)),
            verify_data=str(_pick(verify_data, config, "verify_data", DEFAULTS.verify_data)),
            close_streams=_pick(close_streams, config, "close_streams", DEFAULTS.close_streams),
        )
    except (ValueError, TypeError) as err:
        _fail(str(err))
    since_value = _pick(since, config, "since", None)
    until_value = _pick(until, config, "until", None)
    _times(since_value, until_value, options.timezone)
    selection = _query(_pick(query, config, "query", None))
    source, client = _connect(
        _pick(metadatastore_uri, config, "metadatastore_uri", None),
        _pick(assets_uri, config, "assets_uri", None),
        _pick(tiled_uri, config, "tiled_uri", None),
        api_key,
    )
    state_path = Path(_pick(state, config, "state", base / "databroker-migrate-state.jsonl"))
    report_path = Path(_pick(report, config, "report", base / "databroker-migrate-report.json"))
    try:
        result = run_job(
            source,
            client,
            options,
            since=since_value,
            until=until_value,
            query=selection,
            scheduler=_pick(scheduler, config, "scheduler", None),
            also_served_by=list(_pick(also_served_by or None, config, "also_served_by", []) or []),
            api_key=api_key,
            state_path=state_path,
            report_path=report_path,
        )
    except (ValueError, TypeError, OSError) as err:
        _fail(str(err))
    typer.echo(result.summary())
    typer.echo(f"report: {report_path}")
    raise typer.Exit(result.exit_code())


@app.command("verify")
def verify_command(
    config_path: Annotated[Optional[Path], _CONFIG] = None,
    from_config: Annotated[Optional[str], _FROM_CONFIG] = None,
    metadatastore_uri: Annotated[Optional[str], _MDS] = None,
    assets_uri: Annotated[Optional[str], _ASSETS] = None,
    tiled_uri: Annotated[Optional[str], _TILED] = None,
    api_key: Annotated[Optional[str], _KEY] = None,
    since: Annotated[Optional[str], _SINCE] = None,
    until: Annotated[Optional[str], _UNTIL] = None,
    timezone: Annotated[Optional[str], _TIMEZONE] = None,
    query: Annotated[Optional[str], _QUERY] = None,
    uid: Annotated[Optional[list[str]], typer.Option("--uid", help="Only this run (repeatable).")] = None,
    close_open_runs: Annotated[Optional[bool], typer.Option("--close-open-runs/--leave-open-runs", help=f"As given to the migration [{'on' if DEFAULTS.close_open_runs else 'off'}].")] = None,
    root_map: Annotated[Optional[list[str]], _ROOT_MAP] = None,
    allow_missing_files: Annotated[Optional[bool], _ALLOW_MISSING] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the verification as JSON here.")] = None,
    verbose: Annotated[bool, _VERBOSE] = False,
) -> None:
    """Compare source and target run by run: start/stop, descriptors, event counts, column checksums."""
    _setup_logging(verbose)
    config = {**_sources_from_config(from_config), **load_config(config_path)}
    since_value = _pick(since, config, "since", None)
    until_value = _pick(until, config, "until", None)
    zone_name = _pick(timezone, config, "timezone", DEFAULTS.timezone)
    _times(since_value, until_value, zone_name)
    selection = _query(_pick(query, config, "query", None))
    try:
        mapping = _root_map(root_map, config)
    except ValueError as err:
        _fail(str(err))
    allowed = bool(_pick(allow_missing_files, config, "allow_missing_files", DEFAULTS.allow_missing_files))
    source, client = _connect(
        _pick(metadatastore_uri, config, "metadatastore_uri", None),
        _pick(assets_uri, config, "assets_uri", None),
        _pick(tiled_uri, config, "tiled_uri", None),
        api_key,
    )
    if mapping:
        source.set_root_map(mapping)
    try:
        result = verify(
            source,
            client,
            uids=uid or None,
            since=since_value,
            until=until_value,
            query=selection,
            close_open_runs=bool(_pick(close_open_runs, config, "close_open_runs", DEFAULTS.close_open_runs)),
            timezone=zone_name,
        )
    except (ValueError, TypeError) as err:
        _fail(str(err))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    typer.echo(redact(result.summary()))
    raise typer.Exit(verification_exit_code(result, allow_missing_files=allowed))


def verification_exit_code(result: Any, *, allow_missing_files: bool = False) -> int:
    """The exit status of ``verify``, by the rules of ``run``: 1 for a mismatch, or an incomplete run unless allowed.

    A run is incomplete when its verification lists ``missing_frames`` (the events its
    source has without their frames).
    """
    if not result.ok:
        return EXIT_RUNS
    incomplete = [r for r in result.runs if getattr(r, "missing_frames", None)]
    for run in incomplete:
        allowed = " (allowed: --allow-missing-files)" if allow_missing_files else ""
        typer.echo(f"INCOMPLETE{allowed} {run.uid}: events without their frames {run.missing_frames}")
    return EXIT_RUNS if incomplete and not allow_missing_files else EXIT_OK


def main() -> None:
    """Entry point of the ``databroker-migrate`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
