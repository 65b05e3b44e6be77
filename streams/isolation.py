"""Finding the records that make a batch step fail, so that only they are set aside.

A view's transformation and tiling run over a whole micro-batch at once (that is what makes them
fast). When that raises, the exception does not say which record caused it, and re-running the
step one record at a time would cost a pandas call per event. So the batch is bisected: the
halves that go through are kept whole, the failing ones split again, down to single records,
which are the culprits. With k bad records in n that is O(k log n) runs, and nothing more than
the one run when the batch is fine.

The good rows are then run *together* once more, so their result is the batch result minus the
culprits (for a row-wise step, exactly what a run without them gives). A step that fails on the
good rows together although each part went through (one that is not row-wise, e.g. it
aggregates across rows) fails every row of the batch: their exception is the reason.

Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

__all__ = ["isolate_failures"]

T = TypeVar("T")

_REASON_CHARS = 500


def isolate_failures(count: int, attempt: Callable[[np.ndarray | None], T]) -> tuple[T | None, list[tuple[int, str]]]:
    """``(attempt's result over the rows that can go through, [(row, reason), ...] of the others)``.

    ``attempt(rows)`` runs the step over the given rows (positions in ``0..count-1``, ascending;
    ``None`` for all of them) and raises on failure. The result is None when no row goes through.
    """
    try:
        return attempt(None), []
    except Exception as exc:
        if count == 0:  # nothing to blame: no row, no result
            return None, []
        first = exc
    failures: list[tuple[int, str]] = []
    good: list[np.ndarray] = []
    pending: list[tuple[np.ndarray, BaseException]] = [(np.arange(count, dtype=np.int64), first)]
    while pending:
        rows, error = pending.pop()
        if len(rows) == 1:
            failures.append((int(rows[0]), _reason(error)))
            continue
        middle = len(rows) // 2
        for half in (rows[:middle], rows[middle:]):
            try:
                attempt(half)
            except Exception as exc:
                pending.append((half, exc))
            else:
                good.append(half)
    failures.sort()
    if not good:
        return None, failures
    kept = np.sort(np.concatenate(good))
    try:
        return attempt(kept), failures
    except Exception as exc:  # fails only together: the step is not row-wise, every row is suspect
        return None, sorted([*failures, *((int(row), _reason(exc)) for row in kept)])


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if not str(error).startswith(type(error).__name__) else str(error)
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "..."
