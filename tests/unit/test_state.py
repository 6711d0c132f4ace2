"""The job's state file: append-only, last line wins, torn lines ignored, read-only for a dry run."""

from __future__ import annotations

import json

from databroker_compat.migration.state import JobState


def test_last_line_of_a_uid_wins_and_survives_a_restart(tmp_path):
    path = tmp_path / "deep" / "state.jsonl"
    state = JobState(path)
    state.mark("a", "started")
    state.mark("a", "done", events=3, outcome="migrated")
    state.mark("b", "started")
    state.mark("c", "failed", reason="HTTPStatusError: 503")
    state.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["uid"], r["status"]) for r in lines] == [("a", "started"), ("a", "done"), ("b", "started"), ("c", "failed")]
    assert lines[1]["events"] == 3 and lines[1]["at"].endswith("+00:00")
    again = JobState(path)
    assert [again.status(u) for u in "abcd"] == ["done", "started", "failed", None]
    assert [again.started_here(u) for u in "abcd"] == [False, True, True, False]


def test_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "state.jsonl"
    state = JobState(path)
    state.mark("a", "done")
    state.close()
    with open(path, "a") as fh:
        fh.write('{"uid": "b", "sta')  # killed mid-write
    again = JobState(path)
    assert again.status("a") == "done" and again.status("b") is None
    again.mark("b", "done")  # appends after the torn line; the next load still reads it
    again.close()
    assert JobState(path).status("b") == "done"


def test_read_only_state_reads_but_never_writes(tmp_path):
    path = tmp_path / "state.jsonl"
    JobState(path).mark("a", "started")
    before = path.read_text()
    dry = JobState(path, read_only=True)
    assert dry.started_here("a")
    dry.mark("a", "done")
    dry.close()
    assert dry.status("a") == "done"  # in memory only
    assert path.read_text() == before
    absent = tmp_path / "none.jsonl"
    JobState(absent, read_only=True).mark("x", "done")
    assert not absent.exists()


def test_in_memory_state(tmp_path):
    state = JobState(None)
    state.mark("a", "done")
    assert state.status("a") == "done"
    state.close()
    assert list(tmp_path.iterdir()) == []
