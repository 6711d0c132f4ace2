"""The job's options: one frozen, picklable object, checked once, the CLI's defaults; the time rule.

No server: the command is run in-process with typer's CliRunner (and once as a real
subprocess) on inputs it refuses before connecting anywhere; the time selection runs
on a mongomock database.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import mongomock
import pytest
from typer.testing import CliRunner

from databroker_compat import _time
from databroker_compat.exceptions import BadArgument, BadTime
from databroker_compat.migration import DEFAULTS, LegacySource, MigrationOptions, RetryPolicy, migrate
from databroker_compat.migration.cli import CONFIG_KEYS, app, load_config
from databroker_compat.migration.writing_view import QuietDispatch, close_streams, forget_decisions

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_logging():
    """The command installs a stderr handler on the root logger; take it away after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_defaults_are_the_documented_ones():
    assert (DEFAULTS.batch_size, DEFAULTS.workers, DEFAULTS.partition_runs, DEFAULTS.page_size) == (10_000, 1, 25, 200)
    assert DEFAULTS.retry == RetryPolicy(retries=5, backoff=1.0, backoff_max=30.0)
    assert (DEFAULTS.verify, DEFAULTS.close_open_runs, DEFAULTS.overwrite, DEFAULTS.dry_run) == (True, True, False, False)
    assert DEFAULTS.timezone is None  # the zone rule's default: this machine's local zone


def test_migrate_takes_its_defaults_from_the_options():
    import inspect

    parameters = inspect.signature(migrate).parameters
    for option in dataclasses.fields(MigrationOptions):
        if option.name in parameters and option.name != "retry":
            assert parameters[option.name].default == getattr(DEFAULTS, option.name), option.name


def test_options_are_frozen_and_picklable():
    options = MigrationOptions(batch_size=500, overwrite=True, timezone="UTC", retry=RetryPolicy(retries=2))
    assert pickle.loads(pickle.dumps(options)) == options
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 1  # type: ignore[misc]
    assert dataclasses.replace(options, workers=3).workers == 3


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0),
        ("workers", 0),
        ("workers", -2),
        ("page_size", 0),
        ("partition_runs", 0),
        ("large_run_events", 0),
        ("batch_size", "many"),
        ("workers", True),
    ],
)
def test_bad_options_are_bad_arguments(field, value):
    with pytest.raises(BadArgument, match=field) as caught:
        MigrationOptions(**{field: value})
    err = caught.value
    assert isinstance(err, ValueError) and not isinstance(err, RuntimeError)
    assert (err.option, err.value) == (field, value)


def test_bad_retry_policy_and_zone():
    with pytest.raises(BadArgument, match="retries") as caught:
        RetryPolicy(retries=-1)
    assert caught.value.option == "retries"
    with pytest.raises(BadArgument, match="retry"):
        MigrationOptions(retry=5)  # type: ignore[arg-type]
    with pytest.raises(BadTime, match="Mars/Olympus"):
        MigrationOptions(timezone="Mars/Olympus")


def test_workers_zero_is_a_one_line_error_with_exit_2():
    result = runner.invoke(app, ["run", "--workers", "0"])
    assert result.exit_code == 2
    assert result.output == "databroker-migrate: workers must be at least 1, not 0.\n"
    # A clean exit with status 2, not an error escaping the command (which would print a traceback).
    assert isinstance(result.exception, SystemExit) and result.exception.code == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--retries", "-1"], "retries must be"),
        (["--batch-size", "0"], "batch_size must be a positive number of events, not 0."),
        (["--partition-runs", "0"], "partition_runs must be"),
        (["--timezone", "Nowhere/City"], "Unknown time zone 'Nowhere/City'"),
        (["--since", "2019-13"], "Cannot read --since='2019-13' as a time"),
        (["--query", "[1, 2]"], "--query must be a JSON object"),
    ],
)
def test_bad_options_exit_2_before_connecting(args, message):
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_workers_zero_in_a_real_process():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "databroker_compat.migration.cli", "run", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "databroker-migrate: workers must be at least 1, not 0."
    assert "Traceback" not in done.stderr + done.stdout


def test_job_file_options_are_checked_too(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("workers: 0\ntimezone: UTC\n")
    assert load_config(job) == {"workers": 0, "timezone": "UTC"}
    result = runner.invoke(app, ["run", "--config", str(job)])
    assert result.exit_code == 2 and "workers must be at least 1, not 0." in result.output
    job.write_text("batch_size: lots\n")
    result = runner.invoke(app, ["run", "--config", str(job)])
    assert result.exit_code == 2 and "lots" in result.output


def test_help_shows_the_options_defaults():
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"[{DEFAULTS.batch_size}]" in text and f"[{DEFAULTS.partition_runs}]" in text
    assert f"[{DEFAULTS.retry.retries}]" in text and "--timezone" in text


# -- time strings: the migration's selection reads them as db(since=...) does -------------------

SINCE = ["2019", "2019-01", "2019-01-01", "2019-01-01 12:30", "2019-03-10 02:30", "2019-07-01T06:00:00+05:00"]
ZONES = ["UTC", "America/New_York", "Asia/Tokyo", None]


def _source_at(times: list[float]) -> tuple[LegacySource, list[str]]:
    db = mongomock.MongoClient()[f"times_{len(times)}_{int(times[0])}"]
    uids = [f"run-{i}" for i in range(len(times))]
    db["run_start"].insert_many([{"uid": u, "time": t} for u, t in zip(uids, times, strict=True)])
    return LegacySource(db), uids


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("text", SINCE)
def test_since_and_until_are_the_instants_of_the_one_time_rule(text, zone):
    boundary = _time.to_timestamp(text, zone)  # what db(since=text) with this zone means
    source, uids = _source_at([boundary - 1.0, boundary, boundary + 1.0])
    assert list(source.find_run_uids(since=text, timezone=zone)) == uids[1:]
    assert list(source.find_run_uids(until=text, timezone=zone)) == uids[:1]
    assert source.count_runs(since=text, timezone=zone) == 2


def test_month_strings_are_accepted_and_naive_times_follow_the_zone():
    new_york = _time.to_timestamp("2019-01", "America/New_York")
    utc = _time.to_timestamp("2019-01", "UTC")
    assert new_york - utc == 5 * 3600
    source, uids = _source_at([utc, new_york])
    assert list(source.find_run_uids(since="2019-01", timezone="America/New_York")) == uids[1:]
    assert list(source.find_run_uids(since="2019-01", timezone="UTC")) == uids
    # No zone given: this machine's zone, as for db(since=...).
    local = _time.to_timestamp("2019-01", None)
    assert list(source.find_run_uids(since="2019-01")) == [u for u, t in zip(uids, [utc, new_york], strict=True) if t >= local]
    aware = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)
    assert list(source.find_run_uids(since=aware, timezone="Asia/Tokyo")) == uids
    assert list(source.find_run_uids(since=new_york)) == uids[1:]  # epoch seconds are instants


def test_a_bad_time_is_a_value_error_that_names_it():
    source, _ = _source_at([0.0])
    with pytest.raises(BadTime, match="since='last tuesday'") as caught:
        list(source.find_run_uids(since="last tuesday"))
    assert isinstance(caught.value, ValueError) and caught.value.value == "last tuesday"
    with pytest.raises(BadArgument, match="query"):
        list(source.find_run_uids(query="plan_name == scan"))  # type: ignore[arg-type]


def test_cli_accepts_month_strings():
    result = runner.invoke(app, ["run", "--since", "2019-01", "--until", "2020", "--timezone", "America/New_York"])
    # The times are fine: what is missing is the source.
    assert result.exit_code == 2 and "--metadatastore-uri" in result.output


# -- close_streams: None (ask the server), True, False; the CLI flag and the job-file key --------------


def test_the_default_asks_the_server():
    assert DEFAULTS.close_streams is None
    for value in (None, True, False):
        options = MigrationOptions(close_streams=value)
        assert pickle.loads(pickle.dumps(options)).close_streams is value


@pytest.mark.parametrize("value", ["no", 0, 1, "false"])
def test_only_true_false_or_none(value):
    with pytest.raises(BadArgument, match="close_streams must be True, False or None") as caught:
        MigrationOptions(close_streams=value)  # type: ignore[arg-type]
    assert (caught.value.option, caught.value.value) == ("close_streams", value)


def test_an_explicit_answer_asks_no_server():
    class NoServer:  # any attribute access but .uri would fail: nothing is sent
        uri = "http://nowhere.invalid/api/v1/metadata/runs"

    forget_decisions()
    assert close_streams(NoServer(), True) is True
    assert close_streams(NoServer(), False) is False


def test_the_cli_has_the_flag_and_the_job_file_key(tmp_path):
    assert "close_streams" in CONFIG_KEYS
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    assert "--close-streams" in result.output and "--no-close-streams" in result.output
    config = tmp_path / "job.yaml"
    config.write_text("close_streams: sometimes\n")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "close_streams must be True, False or None" in result.output


def test_the_quiet_dispatch_serves_structure_families_only():
    from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH, Container

    quiet = QuietDispatch(DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"])
    assert issubclass(quiet["container"], Container) and quiet["container"] is quiet["container"]
    assert quiet.get("BlueskyRun") is None and "BlueskyRun" not in list(quiet)
    composite = quiet["composite"]
    assert isinstance(composite.__dict__["base"], property)  # the writer writes into .base: quiet too
    assert "close_stream" in quiet["table"].__dict__ and "close_stream" in quiet["array"].__dict__
