"""One lifecycle run per model: a second run waits for the first, or fails clearly after its timeout."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow, get_client
from prefect.concurrency.sync import concurrency

from tasks.locks import LifecycleBusyError, lifecycle_lock, lifecycle_lock_name

pytestmark = [pytest.mark.slow, pytest.mark.service]


@flow(persist_result=False)
def locked_run(model_name: str, timeout_s: float) -> str:
    with lifecycle_lock(model_name, timeout_s):
        return "ran"


def test_a_second_run_of_the_same_model_is_refused_after_waiting(
    prefect_server: None, caplog: pytest.LogCaptureFixture
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    assert locked_run(model, 5) == "ran"  # creates the limit and releases it

    with concurrency(lifecycle_lock_name(model), occupy=1, strict=True):  # a run in progress
        with pytest.raises(LifecycleBusyError, match=f"another lifecycle run of model '{model}'"):
            locked_run(model, 1)
        # It said whom it waited for before giving up (the server's answer, not a racy pre-check).
        assert any("holds the concurrency limit" in r.getMessage() for r in caplog.records)
        assert locked_run(f"{model}-other", 5) == "ran"  # other models are not held up

    caplog.clear()
    assert locked_run(model, 5) == "ran"
    assert not any("holds the concurrency limit" in r.getMessage() for r in caplog.records)  # a free slot: no wait
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(lifecycle_lock_name(model)).active_slots == 0
