"""One lifecycle run per model at a time: a Prefect global concurrency limit keyed by model name.

A scheduled run, an event-triggered run and a manual run of the same model would otherwise race:
both evaluate against the same champion, and the second promotion is refused only at the very end
(compare-then-set), after all the tuning. With this lock the later run waits for the earlier one
and then evaluates against whatever champion it left.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect import get_client, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from tuneline.errors import TunelineError

__all__ = ["LifecycleBusyError", "ensure_concurrency_limit", "lifecycle_lock", "lifecycle_lock_name"]


def ensure_concurrency_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit if missing, safe when several runs race to create it.

    Callers then take it with ``strict=True``, which turns a missing limit into an error instead
    of Prefect's default silent no-op.
    """
    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, limit=limit)
        except ObjectAlreadyExists:  # another run created it between our read and our create
            pass


class LifecycleBusyError(TunelineError):
    """Another lifecycle run of the same model held the lock for longer than this run would wait."""


def lifecycle_lock_name(model_name: str) -> str:
    return f"tuneline-lifecycle-{model_name}"


@contextmanager
def lifecycle_lock(model_name: str, timeout_s: float | None) -> Iterator[None]:
    """Hold the model's lifecycle slot for the duration; wait up to ``timeout_s`` (None: forever)."""
    logger = get_run_logger()
    name = lifecycle_lock_name(model_name)
    ensure_concurrency_limit(name)
    with get_client(sync_client=True) as client:
        busy = client.read_global_concurrency_limit_by_name(name).active_slots >= 1
    if busy:
        limit = "without limit" if timeout_s is None else f"up to {timeout_s:.0f} s"
        logger.warning(
            "another lifecycle run of %s is in progress (concurrency limit %r); waiting %s for it to finish",
            model_name, name, limit,
        )
    with ExitStack() as held:
        try:
            # A run can hold the slot for hours (training, a person's approval): a transient failure
            # to renew the lease must not kill it; a crashed run's lease still expires.
            held.enter_context(
                concurrency(
                    name, occupy=1, timeout_seconds=timeout_s, strict=True, raise_on_lease_renewal_failure=False
                )
            )
        except TimeoutError as exc:
            raise LifecycleBusyError(
                f"another lifecycle run of model {model_name!r} held the concurrency limit {name!r} for more "
                f"than {timeout_s:.0f} s; this run did nothing. Wait for that run (Prefect UI, flow runs of "
                f"'customize-model'), or raise TUNELINE_LIFECYCLE_LOCK_TIMEOUT_S"
            ) from exc
        yield
