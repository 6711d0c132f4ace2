"""The run decision (write / skip / rewrite / refuse) and the retry decision: pure, no server."""

from __future__ import annotations

import itertools

import httpx
import pytest

from databroker_compat.migration.decide import ACTIONS, REFUSE, REWRITE, SKIP, WRITE, TargetRun, decide
from databroker_compat.migration.options import MigrationOptions
from databroker_compat.migration.plan import planned_outcome
from databroker_compat.migration.worker import is_transient

ABSENT = TargetRun(present=False)
COMPLETE = TargetRun(present=True, complete=True, has_stop=True)
HALF_WRITTEN = TargetRun(present=True, complete=False, has_stop=False)
DIFFERENT = TargetRun(present=True, complete=False, has_stop=True)


@pytest.mark.parametrize(
    "target, started_here, overwrite, action",
    [
        (ABSENT, False, False, WRITE),
        (ABSENT, True, True, WRITE),
        (COMPLETE, False, False, SKIP),
        (COMPLETE, True, True, SKIP),  # complete wins: never rewrite what is already right
        (HALF_WRITTEN, False, False, REWRITE),
        (DIFFERENT, False, False, REFUSE),
        (DIFFERENT, True, False, REWRITE),  # begun by an earlier pass of this job
        (DIFFERENT, False, True, REWRITE),  # --overwrite
    ],
)
def test_decision_table(target, started_here, overwrite, action):
    decision = decide(target, started_here=started_here, overwrite=overwrite)
    assert decision.action == action
    assert (decision.reason == "") == (action == WRITE)


def test_every_combination_gives_one_of_the_actions():
    for present, complete, has_stop, started, overwrite in itertools.product([False, True], repeat=5):
        decision = decide(TargetRun(present, complete, has_stop), started_here=started, overwrite=overwrite)
        assert decision.action in ACTIONS


def test_refusal_says_what_to_do():
    reason = decide(DIFFERENT).reason
    assert "different content" in reason and "--overwrite" in reason and "left untouched" in reason
    assert decide(COMPLETE).reason == "already present in the target with the same content"
    assert decide(HALF_WRITTEN).reason == "present but incomplete in the target"


def test_dry_run_honours_overwrite():
    """The dry run takes the worker's decision: with overwrite a conflicting run would be rewritten."""
    plain = MigrationOptions()
    forced = MigrationOptions(overwrite=True)
    refused = planned_outcome("u", DIFFERENT, started_here=False, options=plain, warnings=["w"])
    assert (refused.status, refused.warnings) == ("failed", [])
    assert "different content" in refused.reason
    replaced = planned_outcome("u", DIFFERENT, started_here=False, options=forced, warnings=["w"])
    assert (replaced.status, replaced.warnings) == ("would-rewrite", ["w"])
    resumed = planned_outcome("u", DIFFERENT, started_here=True, options=plain)
    assert resumed.status == "would-rewrite"


@pytest.mark.parametrize(
    "target, status",
    [(ABSENT, "would-migrate"), (COMPLETE, "skipped"), (HALF_WRITTEN, "would-rewrite"), (DIFFERENT, "failed")],
)
def test_dry_run_statuses(target, status):
    outcome = planned_outcome("u", target, started_here=False, options=MigrationOptions())
    assert outcome.uid == "u" and outcome.status == status


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://tiled/api/v1/metadata/x")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code, request=request))


def test_transient_rule_takes_tiled_http_rule_plus_the_migration_ones():
    request = httpx.Request("GET", "http://tiled/api/v1")
    assert is_transient(httpx.ConnectError("refused", request=request))
    assert all(is_transient(_status_error(code)) for code in (500, 502, 503, 429))
    assert is_transient(_status_error(409))  # an earlier attempt's request got through
    assert not any(is_transient(_status_error(code)) for code in (400, 401, 403, 404))
    assert not is_transient(httpx.UnsupportedProtocol("htps://x", request=request))  # tiled's rule: never retried
    assert is_transient(ConnectionResetError("reset")) and is_transient(TimeoutError("slow"))

    class AutoReconnect(Exception):  # pymongo's network errors are matched by name
        pass

    assert is_transient(AutoReconnect("primary stepped down"))
    try:
        try:
            raise _status_error(503)
        except httpx.HTTPStatusError as inner:
            raise RuntimeError("writer failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert not is_transient(KeyError("uid")) and not is_transient(None)
