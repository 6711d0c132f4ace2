"""Run outcomes, the summary that counts them, and the exit status that follows (no server)."""

from __future__ import annotations

import json

import pytest

from databroker_compat.migration.fixes import FIX_KINDS, MISSING_FRAMES, STOP, FixLog, note
from databroker_compat.migration.report import (
    EQUAL,
    FAILED,
    INCOMPLETE,
    MIGRATED,
    OUTCOMES,
    REWRITTEN,
    SKIPPED,
    WITH_FIXES,
    WOULD_MIGRATE,
    MigrationReport,
    RunOutcome,
    outcome_of,
)
from databroker_compat.migration.verify import RunVerification, VerificationReport

GAP = {"kind": MISSING_FRAMES, "message": "primary/img arrived without 1 of 3 frames: datum not found (seq_num 2)",
       "stream": "primary", "key": "img", "seq_nums": [2]}


def _runs() -> list[RunOutcome]:
    return [
        RunOutcome("equal", MIGRATED, events=3),
        RunOutcome("fixed", REWRITTEN, events=3, fixes=[{"kind": STOP, "message": "no stop document"}]),
        RunOutcome("gap", MIGRATED, events=3, fixes=[GAP], missing_frames={"primary": {"img": [2]}}),
        RunOutcome("broken", FAILED, reason="FramesDisagree: ..."),
        RunOutcome("there", SKIPPED, reason="already present in the target with the same content"),
    ]


def test_each_run_has_one_outcome_and_they_add_up():
    report = MigrationReport("mongodb://h/db", "http://t", runs=_runs())
    assert report.outcomes() == {"equal": EQUAL, "fixed": WITH_FIXES, "gap": INCOMPLETE, "broken": FAILED,
                                 "there": SKIPPED}
    counts = report.outcome_counts()
    assert list(counts) == list(OUTCOMES) and sum(counts.values()) == len(report.runs) == 5
    summary = report.summary()
    assert "5 run(s): migrated equal: 1, migrated with fixes: 1, incomplete: 1, failed: 1, skipped: 1" in summary
    assert "INCOMPLETE gap: primary/img arrived without 1 of 3 frames: datum not found (seq_num 2)" in summary
    assert "FAILED broken: FramesDisagree" in summary


def test_the_reason_of_an_incomplete_run_comes_from_its_fixes():
    assert RunOutcome("gap", MIGRATED, fixes=[GAP], missing_frames={"primary": {"img": [2]}}).reason == GAP["message"]
    assert RunOutcome("gap", MIGRATED, reason="given", fixes=[GAP], missing_frames={"p": {"k": [1]}}).reason == "given"
    assert outcome_of(RunOutcome("x", WOULD_MIGRATE, fixes=[GAP], missing_frames={"p": {"k": [1]}})) == INCOMPLETE


@pytest.mark.parametrize(
    "runs, allow, verified_ok, code",
    [
        (["equal", "fixed", "there"], False, True, 0),
        (["equal", "gap"], False, True, 1),
        (["equal", "gap"], True, True, 0),
        (["equal", "broken"], True, True, 1),
        (["equal"], False, False, 1),  # written, but it did not verify
    ],
)
def test_exit_code(runs, allow, verified_ok, code):
    chosen = [r for r in _runs() if r.uid in runs]
    verification = VerificationReport([RunVerification("equal", verified_ok, [] if verified_ok else ["checksum"])])
    report = MigrationReport("s", "t", runs=chosen, verification=verification, allow_missing_files=allow)
    assert report.exit_code() == code and report.ok is (code == 0)
    if not verified_ok:
        assert report.outcomes()["equal"] == FAILED


def test_the_json_report_holds_every_fix():
    report = MigrationReport("mongodb://u:pw@h/db", "http://t", runs=_runs())
    data = json.loads(json.dumps(report.to_dict()))
    gap = next(r for r in data["runs"] if r["uid"] == "gap")
    assert (gap["outcome"], gap["missing_frames"], gap["fixes"]) == ("incomplete", {"primary": {"img": [2]}}, [GAP])
    assert data["outcomes"]["incomplete"] == 1 and data["exit_code"] == 1 and data["ok"] is False
    assert "pw" not in json.dumps(data)


def test_fix_log():
    log = FixLog()
    log.add(MISSING_FRAMES, "primary/img: 1 missing", stream="primary", key="img", seq_nums=[2], fill=None)
    note(log, STOP, "no stop document")
    lines: list[str] = []
    note(lines, STOP, "no stop document")
    assert log.lines == ["primary/img: 1 missing", "no stop document"] and lines == ["no stop document"]
    assert log.to_list()[0] == {"kind": MISSING_FRAMES, "message": "primary/img: 1 missing", "stream": "primary",
                                "key": "img", "seq_nums": [2], "fill": None}
    assert len(log) == 2 and set(FIX_KINDS) >= {f.kind for f in log.fixes}
    with pytest.raises(ValueError, match="unknown fix kind"):
        log.add("oops", "?")
