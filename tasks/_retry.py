"""Retry only what a retry can fix: outages and throttling, not bad config or bad data."""

from __future__ import annotations

from typing import Any

from tuneline.errors import ServiceUnavailableError, TunelineError

__all__ = ["RETRY_DELAYS", "transient_only"]

# Jittered back-off between attempts, in seconds: long enough to ride out a service restart.
RETRY_DELAYS = [5, 15, 45]


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry unless the failure is one a user must fix."""
    try:
        state.result()
    except ServiceUnavailableError:
        return True
    except TunelineError:
        return False
    except Exception:
        return True
    return True
