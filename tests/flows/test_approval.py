"""Human approval on a real Prefect server: the flow pauses with a form, and resume_flow_run (or the
`tuneline approve` command) decides; timeouts and reviewers outside the allowed list are handled."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from tuneline.config import ApprovalMode, RunConfig
from tuneline.governance.audit import AuditLog
from tuneline.lineage import Decision
from tuneline.settings import Settings
from tuneline.stages.evaluate import EvaluateOutcome
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.service]


def _outcome(report) -> EvaluateOutcome:
    return EvaluateOutcome(report=report, report_markdown="## report", summary={"task/exact_match": {"candidate": 0.8}})


def _start(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _paused_run(name: str, deadline_s: float = 120) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=[name]), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
            if runs:
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError(f"flow run {name} never paused")


def _approve_flow(config: RunConfig, report, name: str) -> Callable[[], Decision]:
    from flows.stages import approve

    return lambda: approve.with_options(flow_run_name=name)(config, _outcome(report), None, ApprovalMode.HUMAN)


@pytest.fixture
def human_config(run_config) -> Callable[..., RunConfig]:
    def make(**approval: Any) -> RunConfig:
        config = run_config()
        return config.model_copy(update={"approval": config.approval.model_copy(update=approval)})

    return make


def test_resume_with_a_decision_approves_and_records_the_reviewer(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from prefect.flow_runs import resume_flow_run

    config = human_config(timeout_seconds=300)
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    run_id = _paused_run(name)
    resume_flow_run(uuid.UUID(run_id), run_input={"decision": "approve", "reviewer": "ana", "comment": "ok"})
    thread.join(120)
    decision: Decision = box["result"]
    assert decision.approved and decision.decided_by == "ana" and decision.comment == "ok"
    (record,) = AuditLog(ObjectStore(lifecycle_settings)).records(config.name)
    assert (record.kind, record.actor, record.approved) == ("approval", "ana", True)


def test_a_bad_decision_value_is_refused_and_the_run_stays_paused(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from prefect.flow_runs import resume_flow_run

    config = human_config(timeout_seconds=300)
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    run_id = _paused_run(name)
    with pytest.raises(RuntimeError, match="decision"):
        resume_flow_run(uuid.UUID(run_id), run_input={"decision": "maybe", "reviewer": "ana", "comment": ""})
    assert _paused_run(name, deadline_s=5) == run_id
    result = CliRunner().invoke(_cli(), ["reject", run_id, "--reviewer", "bo", "--comment", "not convinced"])
    assert result.exit_code == 0, result.output
    thread.join(120)
    decision: Decision = box["result"]
    assert not decision.approved and decision.decided_by == "bo"


def test_a_reviewer_outside_the_list_is_refused_and_the_run_waits_for_an_allowed_one(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from prefect.flow_runs import resume_flow_run

    config = human_config(timeout_seconds=300, reviewers=["ana"])
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    first = _paused_run(name)
    resume_flow_run(uuid.UUID(first), run_input={"decision": "approve", "reviewer": "mallory", "comment": ""})
    time.sleep(2)
    assert "result" not in box and "error" not in box, "mallory's approval must not end the wait"
    second = _paused_run(name)
    resume_flow_run(uuid.UUID(second), run_input={"decision": "approve", "reviewer": "ana", "comment": ""})
    thread.join(120)
    assert box["result"].approved and box["result"].decided_by == "ana"


def test_no_decision_before_the_timeout_is_a_rejection(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    config = human_config(timeout_seconds=3)
    decision = _approve_flow(config, lineage()[2], f"approve-{uuid.uuid4().hex[:8]}")()
    assert not decision.approved
    assert "no decision within 3 s" in decision.comment


def _cli():
    from tuneline_cli.main import app

    return app
