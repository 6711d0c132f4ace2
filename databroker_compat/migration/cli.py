"""The ``databroker-migrate`` command: ``run`` a migration job, ``verify`` one.

Options can come from a YAML job file (``--config``); options given on the command line
win. The Tiled API key comes from ``--api-key`` or the ``TILED_API_KEY`` environment
variable and is never printed or logged; MongoDB passwords are masked in every message.

Exit status: 0 when everything moved (and verified), 1 when a run failed or did not
verify, 2 for bad options.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .redact import redact

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Migrate runs from legacy databroker MongoDB databases into Tiled through TiledWriter.",
    no_args_is_help=True,
    add_completion=False,
)

# Keys a job file may hold (same names as the options, with underscores).
CONFIG_KEYS = {
    "metadatastore_uri",
    "assets_uri",
    "tiled_uri",
    "since",
    "until",
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


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    # One handler of ours at a time, also when the command runs several times in one process.
    for old in [h for h in root.handlers if getattr(h, "_databroker_migrate", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._databroker_migrate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # httpx logs every request URL at INFO; a URL may carry an api_key parameter.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail(message: str) -> None:
    typer.echo(f"databroker-migrate: {redact(message)}", err=True)
    raise typer.Exit(2)


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
    """The MongoDB URIs a v1 or intake configuration names (``--from-config``), as job options."""
    if not name_or_path:
        return {}
    from ..config import mongo_sources
    from ..exceptions import ConfigError, ConfigNotFound

    try:
        found = mongo_sources(name_or_path)
    except (ConfigError, ConfigNotFound) as err:
        _fail(f"--from-config {name_or_path}: {err}")
    if found.get("layout") != "mongo_normalized":
        _fail(f"--from-config {name_or_path}: the {found.get('layout')} layout is not supported; only mongo_normalized")
    logger.info("--from-config %s: %s", name_or_path, found["path"])
    return {"metadatastore_uri": found["metadatastore_uri"], "assets_uri": found["assets_uri"]}


def _pick(cli_value: Any, config: dict, key: str, default: Any) -> Any:
    if cli_value is not None:
        return cli_value
    return config.get(key, default)


def _connect(metadatastore_uri, assets_uri, tiled_uri, api_key):
    from tiled.client import from_uri

    from .mongo import LegacySource

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


_MDS = typer.Option(None, "--metadatastore-uri", "--mongo-uri", help="mongodb:// URI of the run database (metadatastore).")
_ASSETS = typer.Option(None, "--assets-uri", help="mongodb:// URI of the asset registry, if separate.")
_TILED = typer.Option(None, "--tiled-uri", help="URI of the Tiled container to write into.")
_KEY = typer.Option(None, "--api-key", envvar="TILED_API_KEY", show_default=False, show_envvar=True, help="Tiled API key (better: the TILED_API_KEY environment variable).")
_CONFIG = typer.Option(None, "--config", "-c", help="YAML job file; command-line options win.")
_FROM_CONFIG = typer.Option(None, "--from-config", help="Take the MongoDB URIs from a databroker v1 configuration (name or YAML file) or an intake catalog YAML; --config and command-line options win.")
_SINCE = typer.Option(None, "--since", help="Only runs started at or after this time (e.g. 2019-01-01).")
_UNTIL = typer.Option(None, "--until", help="Only runs started before this time.")
_QUERY = typer.Option(None, "--query", help='A Mongo query on start documents, as JSON: \'{"beamline_id": "CSX"}\'.')
_VERBOSE = typer.Option(False, "--verbose", "-v", help="Log progress (secrets masked).")


def _query(value: Any) -> Optional[dict]:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        _fail(f"--query must be a JSON object: {err}")
    if not isinstance(parsed, dict):
        _fail("--query must be a JSON object")
    return parsed


@app.command("run")
def run_command(
    config_path: Optional[Path] = _CONFIG,
    from_config: Optional[str] = _FROM_CONFIG,
    metadatastore_uri: Optional[str] = _MDS,
    assets_uri: Optional[str] = _ASSETS,
    tiled_uri: Optional[str] = _TILED,
    api_key: Optional[str] = _KEY,
    since: Optional[str] = _SINCE,
    until: Optional[str] = _UNTIL,
    query: Optional[str] = _QUERY,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Events per table write [10000]."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes of a local dask cluster [1: no cluster]; more only for PostgreSQL-backed servers."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of a running dask.distributed scheduler (tcp://host:8786) to run the job on."),
    also_served_by: Optional[list[str]] = typer.Option(None, "--also-served-by", help="Base URI of another Tiled server process on the same catalog (repeatable); partitions are spread over all."),
    retries: Optional[int] = typer.Option(None, "--retries", help="Retries of a run after a transient failure (5xx, server away) [5]."),
    partition_runs: Optional[int] = typer.Option(None, "--partition-runs", help="Small runs grouped per partition [25]."),
    dry_run: Optional[bool] = typer.Option(None, "--dry-run/--no-dry-run", help="Check everything, write nothing."),
    verify: Optional[bool] = typer.Option(None, "--verify/--no-verify", help="Verify the written runs at the end [on]."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on a terminal [on]."),
    close_open_runs: Optional[bool] = typer.Option(None, "--close-open-runs/--leave-open-runs", help="Give runs without a stop document an exit_status='unknown' stop [on]."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite/--no-overwrite", help="Replace runs present in Tiled with different content [off]."),
    state: Optional[Path] = typer.Option(None, "--state", help="State file for resuming [databroker-migrate-state.jsonl]."),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report path [databroker-migrate-report.json]."),
    verbose: bool = _VERBOSE,
) -> None:
    """Migrate the selected runs (resumable: run the same command again after an interruption)."""
    _setup_logging(verbose)
    config = {**_sources_from_config(from_config), **load_config(config_path)}
    base = config_path.parent if config_path is not None else Path(".")
    source, client = _connect(
        _pick(metadatastore_uri, config, "metadatastore_uri", None),
        _pick(assets_uri, config, "assets_uri", None),
        _pick(tiled_uri, config, "tiled_uri", None),
        api_key,
    )
    from .job import migrate
    from .worker import RetryPolicy

    state_path = Path(_pick(state, config, "state", base / "databroker-migrate-state.jsonl"))
    report_path = Path(_pick(report, config, "report", base / "databroker-migrate-report.json"))
    try:
        result = migrate(
            source,
            client,
            since=_pick(since, config, "since", None),
            until=_pick(until, config, "until", None),
            query=_query(_pick(query, config, "query", None)),
            batch_size=int(_pick(batch_size, config, "batch_size", 10_000)),
            workers=int(_pick(workers, config, "workers", 1)),
            dry_run=bool(_pick(dry_run, config, "dry_run", False)),
            verify=bool(_pick(verify, config, "verify", True)),
            progress=bool(_pick(progress, config, "progress", True)),
            close_open_runs=bool(_pick(close_open_runs, config, "close_open_runs", True)),
            overwrite=bool(_pick(overwrite, config, "overwrite", False)),
            page_size=int(config.get("page_size", 200)),
            scheduler=_pick(scheduler, config, "scheduler", None),
            also_served_by=list(_pick(also_served_by or None, config, "also_served_by", []) or []),
            api_key=api_key,
            retry=RetryPolicy(retries=int(_pick(retries, config, "retries", 5))),
            partition_runs=int(_pick(partition_runs, config, "partition_runs", 25)),
            state_path=state_path,
            report_path=report_path,
        )
    except (ValueError, TypeError, OSError) as err:
        _fail(str(err))
    typer.echo(result.summary())
    typer.echo(f"report: {report_path}")
    raise typer.Exit(0 if result.ok else 1)


@app.command("verify")
def verify_command(
    config_path: Optional[Path] = _CONFIG,
    from_config: Optional[str] = _FROM_CONFIG,
    metadatastore_uri: Optional[str] = _MDS,
    assets_uri: Optional[str] = _ASSETS,
    tiled_uri: Optional[str] = _TILED,
    api_key: Optional[str] = _KEY,
    since: Optional[str] = _SINCE,
    until: Optional[str] = _UNTIL,
    query: Optional[str] = _QUERY,
    uid: Optional[list[str]] = typer.Option(None, "--uid", help="Only this run (repeatable)."),
    close_open_runs: Optional[bool] = typer.Option(None, "--close-open-runs/--leave-open-runs", help="As given to the migration [on]."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the verification as JSON here."),
    verbose: bool = _VERBOSE,
) -> None:
    """Compare source and target run by run: start/stop, descriptors, event counts, column checksums."""
    _setup_logging(verbose)
    config = {**_sources_from_config(from_config), **load_config(config_path)}
    source, client = _connect(
        _pick(metadatastore_uri, config, "metadatastore_uri", None),
        _pick(assets_uri, config, "assets_uri", None),
        _pick(tiled_uri, config, "tiled_uri", None),
        api_key,
    )
    from .verify import verify

    result = verify(
        source,
        client,
        uids=uid or None,
        since=_pick(since, config, "since", None),
        until=_pick(until, config, "until", None),
        query=_query(_pick(query, config, "query", None)),
        close_open_runs=bool(_pick(close_open_runs, config, "close_open_runs", True)),
    )
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    typer.echo(redact(result.summary()))
    raise typer.Exit(0 if result.ok else 1)


def main() -> None:
    """Entry point of the ``databroker-migrate`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
