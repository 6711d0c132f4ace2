"""The run decision: what a pass does with one source run, given what the target holds.

One pure function, :func:`decide`, used by the worker before it writes and by the dry
run to say what a real pass would do, so that the two never disagree:

=============================================================  ===========
the target holds                                               action
=============================================================  ===========
nothing under the run's uid                                    ``write``
the run, recorded as failed or incomplete by an earlier pass   ``rewrite``
the run, complete (same start, stop, streams and row counts)   ``skip``
the run without a stop document (a writer stopped mid-run)     ``rewrite``
the run, begun by an earlier pass of this job (state file)     ``rewrite``
the run with a stop but different content, ``overwrite``       ``rewrite``
the run with a stop but different content                      ``refuse``
=============================================================  ===========

>>> decide(TargetRun(present=False)).action
'write'
>>> decide(TargetRun(present=True, complete=False, has_stop=True)).action
'refuse'
>>> decide(TargetRun(present=True, complete=False, has_stop=True), overwrite=True).action
'rewrite'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACTIONS", "REFUSE", "REWRITE", "SKIP", "WRITE", "Decision", "TargetRun", "decide"]

WRITE = "write"
SKIP = "skip"
REWRITE = "rewrite"
REFUSE = "refuse"
#: Every action :func:`decide` returns.
ACTIONS = (WRITE, SKIP, REWRITE, REFUSE)


@dataclass(frozen=True)
class TargetRun:
    """What the target holds under one run's uid (the facts :func:`decide` needs).

    Attributes
    ----------
    present : bool
        A node with the run's uid exists.
    complete : bool
        It has the same start and stop documents, streams and row counts as the source.
    has_stop : bool
        It has a stop document.
    """

    present: bool
    complete: bool = False
    has_stop: bool = False


@dataclass(frozen=True)
class Decision:
    """An action from :data:`ACTIONS` and the reason for it, as the report prints it."""

    action: str
    reason: str = ""


def decide(
    target: TargetRun, *, started_here: bool = False, overwrite: bool = False, failed_before: bool = False
) -> Decision:
    """What to do with one run: ``write``, ``skip``, ``rewrite`` or ``refuse``.

    Parameters
    ----------
    target : TargetRun
        What the target holds under the run's uid.
    started_here : bool
        An earlier pass of this job began writing the run and did not finish it.
    overwrite : bool
        Replace a run present with different content (``--overwrite``).
    failed_before : bool
        An earlier pass of this job wrote the run and recorded it as failed (it did not
        verify, or arrived without some frames): write it again even if it looks complete.

    Returns
    -------
    Decision

    Examples
    --------
    >>> decide(TargetRun(present=True, complete=True)).reason
    'already present in the target with the same content'
    >>> decide(TargetRun(present=True, complete=False, has_stop=True), started_here=True).action
    'rewrite'
    >>> decide(TargetRun(present=True, complete=True, has_stop=True), failed_before=True).reason
    'recorded as failed or incomplete by an earlier pass of this job'
    """
    if not target.present:
        return Decision(WRITE)
    if failed_before:
        return Decision(REWRITE, "recorded as failed or incomplete by an earlier pass of this job")
    if target.complete:
        return Decision(SKIP, "already present in the target with the same content")
    if not target.has_stop:
        return Decision(REWRITE, "present but incomplete in the target")
    if started_here:
        return Decision(REWRITE, "present but not finished by an earlier pass of this job")
    if overwrite:
        return Decision(REWRITE, "present with different content; replaced (overwrite)")
    return Decision(
        REFUSE,
        "a run with this uid is already in the target with different content; "
        "it was left untouched (inspect it, then pass overwrite=True / --overwrite to replace it)",
    )
