"""Retry only what a retry can fix: outages and throttling, not bad config or bad data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuneline.errors import ServiceUnavailableError, TunelineError
from tuneline.settings import get_settings

__all__ = ["RETRY_DELAYS", "transient_only"]

# Jittered back-off between attempts, in seconds (default 5, 15, 45: long enough to ride out a
# service restart). Read once, when the tasks are defined.
RETRY_DELAYS: list[float] = list(get_settings().task_retry_delays_s)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry unless the failure is one a user must fix.

    An outage counts wherever it sits in the exception chain: a backend reports a job that died
    of an S3 outage as ``JobFailedError`` caused by ``ServiceUnavailableError``, and that job
    resumes fine once S3 is back.
    """
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classified below
        if any(isinstance(e, ServiceUnavailableError) for e in _causes(exc)):
            return True
        return not isinstance(exc, TunelineError)
    return True
