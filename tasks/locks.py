"""One lifecycle run per model at a time: a Prefect global concurrency limit keyed by model name.

A scheduled run, an event-triggered run and a manual run of the same model would otherwise race:
both evaluate against the same champion, and the second promotion is refused only at the very end
(compare-then-set), after all the tuning. With this lock the later run waits for the earlier one
and then evaluates against whatever champion it left.

A holder killed outright (``kill -9``, a lost node) cannot release its slot: the slot is freed when
its lease lapses, which is why leases here are short (``LEASE_S``) and renewed while the run lives.
The run that takes the slot next then marks runs that held it and never finished as Crashed, so a
dead run does not sit "Running" or "Paused" (waiting for an approval nobody can act on) forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from uuid import UUID

import httpx
from prefect import get_client, get_run_logger
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, FlowRun, StateType
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run
from prefect.states import Crashed

from tuneline.errors import TunelineError

__all__ = [
    "LEASE_S",
    "LifecycleBusyError",
    "audit_lock",
    "ensure_concurrency_limit",
    "lease_holder",
    "lifecycle_lock",
    "lifecycle_lock_name",
    "lifecycle_lock_tag",
]

LEASE_S = 60.0
"""Seconds a slot outlives its holder's last lease renewal (the holder renews every 45 s).

Prefect's default, 300 s, kept a killed run's model locked for five minutes; 60 s is the shortest
lease the Prefect server accepts. The server's lease reaper runs every 15 s, so a dead holder's
slot is free again within about 75 s.
"""

_UNFINISHED = [StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]


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


def lease_holder() -> ConcurrencyLeaseHolder | None:
    """The current flow run as a lease holder, so the server records who holds a slot."""
    run_id = flow_run.get_id()
    return ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None


class LifecycleBusyError(TunelineError):
    """Another lifecycle run of the same model held the lock for longer than this run would wait."""


def lifecycle_lock_name(model_name: str) -> str:
    return f"tuneline-lifecycle-{model_name}"


def lifecycle_lock_tag(model_name: str) -> str:
    """The tag a lifecycle run puts on itself once it holds the model's slot."""
    return f"tuneline.lifecycle-lock:{model_name}"


def _unfinished_holders(model_name: str, except_id: str | None) -> list[FlowRun]:
    """Runs that took the model's slot and have not finished (alive, or dead and never marked)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[lifecycle_lock_tag(model_name)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_UNFINISHED)),
            )
        )
    return [run for run in runs if str(run.id) != except_id]


def _release_claim(model_name: str) -> None:
    """Untag this run before its slot is released: a tagged run is one that holds the slot or died.

    Otherwise the next holder could take the slot in the moment between the release and this run's
    Completed state, and mark this live run Crashed.
    """
    me = flow_run.get_id()
    if me is None:
        return
    tag = lifecycle_lock_tag(model_name)
    try:
        with get_client(sync_client=True) as client:
            this = client.read_flow_run(UUID(me))
            client.update_flow_run(this.id, tags=[t for t in this.tags if t != tag])
    except httpx.HTTPError as exc:
        # The run's own outcome matters more than the tag; the next holder may mark it Crashed.
        get_run_logger().warning("could not untag flow run %s as the holder of %r: %s", me, tag, exc)


def _claim_and_crash_orphans(model_name: str) -> None:
    """Tag this run as the slot's holder; mark earlier holders that never finished as Crashed.

    Holding the slot proves that no earlier holder is alive (its lease lapsed), so an earlier
    holder still Running or Paused is a dead process's leftover. Its paused approval subflow is
    crashed too: resuming it would approve a run that can no longer promote anything, so this run
    asks for the decision again.
    """
    me = flow_run.get_id()
    if me is None:  # not inside a flow run: nothing to tag
        return
    logger = get_run_logger()
    tag = lifecycle_lock_tag(model_name)
    orphans = _unfinished_holders(model_name, except_id=me)
    with get_client(sync_client=True) as client:
        this = client.read_flow_run(UUID(me))
        client.update_flow_run(this.id, tags=sorted({*this.tags, tag}))
        for orphan in orphans:
            message = (
                f"its process died while it held the lifecycle lock of {model_name!r}; "
                f"superseded by flow run {this.name} ({me})"
            )
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[orphan.id]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_UNFINISHED)),
                )
            )
            for run in [*children, orphan]:
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            was = orphan.state.name if orphan.state else "unknown"
            paused = [c.name for c in children if c.state and c.state.type is StateType.PAUSED]
            logger.warning(
                "flow run %s (%s) of %s was left %s by a process that died; marked Crashed%s",
                orphan.name,
                orphan.id,
                model_name,
                was,
                f" with its approval request {paused[0]} (this run asks for approval again)"
                if paused
                else "",
            )


FIRST_ATTEMPT_S = 3.0
"""Seconds of the first try for the slot, before the run says it is waiting and for whom.

Asking the server whether the slot is busy and then acquiring it races with another run starting
at the same moment (both see it free, one then waits without a word); a first attempt that times
out is the server's own answer.
"""


@contextmanager
def lifecycle_lock(model_name: str, timeout_s: float | None) -> Iterator[None]:
    """Hold the model's lifecycle slot for the duration; wait up to ``timeout_s`` (None: forever)."""
    logger = get_run_logger()
    name = lifecycle_lock_name(model_name)
    ensure_concurrency_limit(name)

    def slot(wait_s: float | None) -> AbstractContextManager[None]:
        # A run can hold the slot for hours (training, a person's approval): a transient failure
        # to renew the lease must not kill it; a crashed run's lease still expires.
        return concurrency(
            name,
            occupy=1,
            timeout_seconds=wait_s,
            lease_duration=LEASE_S,
            strict=True,
            holder=lease_holder(),
            raise_on_lease_renewal_failure=False,
        )

    first_s = FIRST_ATTEMPT_S if timeout_s is None else min(FIRST_ATTEMPT_S, timeout_s)
    with ExitStack() as held:
        try:
            held.enter_context(slot(first_s))
        except TimeoutError:
            rest_s = None if timeout_s is None else max(timeout_s - first_s, 0.0)
            holders = ", ".join(f"{r.name} ({r.id})" for r in _unfinished_holders(model_name, flow_run.get_id()))
            logger.warning(
                "another lifecycle run of %s holds the concurrency limit %r (%s); waiting %s for it to finish. "
                "If that run's process died, its slot is freed when its lease lapses, within %.0f s",
                model_name,
                name,
                holders or "holder unknown",
                "without limit" if rest_s is None else f"up to {rest_s:.0f} s more",
                LEASE_S + 15,
            )
            try:
                held.enter_context(slot(rest_s))
            except TimeoutError as exc:
                raise LifecycleBusyError(
                    f"another lifecycle run of model {model_name!r} held the concurrency limit {name!r} for more "
                    f"than {timeout_s:.0f} s; this run did nothing. Wait for that run (Prefect UI, flow runs of "
                    f"'customize-model'), or raise TUNELINE_LIFECYCLE_LOCK_TIMEOUT_S"
                ) from exc
        _claim_and_crash_orphans(model_name)
        try:
            yield
        finally:
            _release_claim(model_name)


@contextmanager
def audit_lock(model_name: str) -> Iterator[None]:
    """Every write to a model's audit chain (approval, refused attempt, promotion, rollback) holds
    the model's promotion slot, so two writers never chain after the same head."""
    from tasks.promote import promotion_lock_name  # tasks.promote imports this module

    name = promotion_lock_name(model_name)
    ensure_concurrency_limit(name)
    with concurrency(name, occupy=1, lease_duration=LEASE_S, strict=True, holder=lease_holder()):
        yield
