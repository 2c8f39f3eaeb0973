"""Human approval on a real Prefect server: the flow pauses with a form, and resume_flow_run (or the
`tuneline approve` command) decides; timeouts and reviewers outside the allowed list are handled."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prefect import flow
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


def _enrol(settings: Settings, name: str) -> str:
    from tuneline.governance.reviewers import ReviewerRegistry

    return ReviewerRegistry(ObjectStore(settings)).enroll(name, enrolled_by="test", replace=True)


def _verdict(run_id: str, key: str, deadline_s: float = 60) -> dict:
    from prefect.input.actions import read_flow_run_input

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if value := read_flow_run_input(f"{key}-verdict", flow_run_id=uuid.UUID(run_id)):
            return value
        time.sleep(0.5)
    raise AssertionError(f"no verdict for {key} of {run_id}")


def test_resume_with_a_valid_token_approves_and_records_the_authenticated_reviewer(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input

    token = _enrol(lifecycle_settings, "ana")
    config = human_config(timeout_seconds=300)
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    run_id = _paused_run(name)
    resume_flow_run(uuid.UUID(run_id), run_input={"decision": "approve", "reviewer": "ana", "token": token, "comment": "ok"})
    thread.join(120)
    decision: Decision = box["result"]
    assert decision.approved and decision.decided_by == "ana" and decision.comment == "ok"
    (record,) = AuditLog(ObjectStore(lifecycle_settings)).records(config.name)
    assert (record.kind, record.actor, record.approved, record.authenticated) == ("approval", "ana", True, True)
    # the token did its job once read: it is not left in Prefect's database
    assert read_flow_run_input("paused-approval-1-response", flow_run_id=uuid.UUID(run_id)) is None


def test_the_attack_a_typed_name_without_a_credential_is_refused_audited_and_the_run_keeps_waiting(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    """The issue's attack: POST /api/flow_runs/<id>/resume with a reviewer's name and no credential."""
    from prefect import get_client

    token = _enrol(lifecycle_settings, "alice")
    config = human_config(timeout_seconds=300, reviewers=["alice"])
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    run_id = _paused_run(name)
    with get_client(sync_client=True) as client:  # a raw HTTP call, as curl would send it
        response = client._client.post(
            f"/flow_runs/{run_id}/resume", json={"run_input": {"decision": "approve", "reviewer": "alice"}}
        )
    assert response.status_code == 201, response.text
    verdict = _verdict(run_id, "approval-1")
    assert verdict["accepted"] is False and "no reviewer token" in verdict["reason"]
    assert _paused_run(name) == run_id and "result" not in box, "the forged approval must not end the wait"
    refused = AuditLog(ObjectStore(lifecycle_settings)).records(config.name)
    assert [(r.kind, r.actor, r.approved) for r in refused] == [("refused-approval", "alice", None)]

    result = CliRunner().invoke(_cli(), ["approve", run_id, "--reviewer", "alice", "--token", token])
    assert result.exit_code == 0, result.output
    thread.join(120)
    assert box["result"].approved and box["result"].decided_by == "alice"
    kinds = [r.kind for r in AuditLog(ObjectStore(lifecycle_settings)).records(config.name)]
    assert kinds == ["refused-approval", "approval"]


def test_cli_approve_with_a_wrong_token_exits_2_with_the_reason_and_the_run_stays_paused(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from prefect.flow_runs import resume_flow_run

    token = _enrol(lifecycle_settings, "bo")
    config = human_config(timeout_seconds=300)
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    run_id = _paused_run(name)
    with pytest.raises(RuntimeError, match="decision"):
        resume_flow_run(uuid.UUID(run_id), run_input={"decision": "maybe", "reviewer": "bo", "token": token})
    wrong = CliRunner().invoke(_cli(), ["approve", run_id, "--reviewer", "bo", "--token", "not-bos-token"])
    assert wrong.exit_code == 2, wrong.output
    assert "refused" in wrong.output and "is wrong" in wrong.output and "Traceback" not in wrong.output
    assert _paused_run(name) == run_id and "result" not in box
    result = CliRunner().invoke(_cli(), ["reject", run_id, "--reviewer", "bo", "--comment", "not convinced"], input=token + "\n")
    assert result.exit_code == 0, result.output
    thread.join(120)
    decision: Decision = box["result"]
    assert not decision.approved and decision.decided_by == "bo"


def test_an_enrolled_reviewer_outside_the_policy_list_is_refused(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from prefect.flow_runs import resume_flow_run

    ana, mallory = _enrol(lifecycle_settings, "ana"), _enrol(lifecycle_settings, "mallory")
    config = human_config(timeout_seconds=300, reviewers=["ana"])
    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = _start(_approve_flow(config, lineage()[2], name))
    first = _paused_run(name)
    resume_flow_run(uuid.UUID(first), run_input={"decision": "approve", "reviewer": "mallory", "token": mallory})
    assert "may not approve" in _verdict(first, "approval-1")["reason"]
    second = _paused_run(name)
    resume_flow_run(uuid.UUID(second), run_input={"decision": "approve", "reviewer": "ana", "token": ana})
    thread.join(120)
    assert box["result"].approved and box["result"].decided_by == "ana"


@flow(name="approval-parent")
def _parent_of_approve(config: RunConfig, outcome: EvaluateOutcome) -> Decision:
    from flows.stages import approve

    return approve(config, outcome, None, ApprovalMode.HUMAN)


def test_the_parent_shows_the_wait_and_the_form_opens_with_the_evidence(
    lifecycle_settings: Settings, human_config, lineage, capsys
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input

    token = _enrol(lifecycle_settings, "ana")
    config = human_config(timeout_seconds=300)
    name = f"parent-{uuid.uuid4().hex[:8]}"
    png = b"\x89PNG\r\n\x1a\n" + b"chart"
    chart_uri = ObjectStore(lifecycle_settings).put_bytes(
        ObjectStore(lifecycle_settings).uri(f"evals/{name}/comparison.png"), png, content_type="image/png"
    )
    outcome = dataclasses.replace(_outcome(lineage()[2]), chart_uri=chart_uri)
    thread, box = _start(lambda: _parent_of_approve.with_options(flow_run_name=name)(config, outcome))
    deadline = time.monotonic() + 120
    child = None
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and child is None:
            parents = client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"any_": [name]}))
            if parents:
                children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parents[0].id])))
                child = next((c for c in children if c.state and c.state.is_paused()), None)
            time.sleep(0.5)
        assert child is not None, "the approve subflow never paused"
        parent = client.read_flow_run(parents[0].id)
    assert parent.state.is_running() and parent.state.name == "Awaiting approval"
    description = read_flow_run_input("paused-approval-1-description", flow_run_id=child.id)
    assert "Approval gate" in description and "task / exact_match" in description
    assert "+0.700 [+0.600, +0.800]" in description and "Largest regressions" in description
    assert "[Prefect flow run](" in description
    # the chart of the deltas is in the form, as a link a browser opens (presigned), not s3://
    image = re.search(r"!\[Candidate against the baseline[^\]]*\]\((http[^)]+)\)", description)
    assert image is not None, description
    with urllib.request.urlopen(image.group(1), timeout=10) as response:
        assert response.read() == png
    printed = capsys.readouterr().err
    assert f"tuneline approve {parent.id} --reviewer NAME" in printed and f"tuneline reject {parent.id}" in printed
    resume_flow_run(child.id, run_input={"decision": "approve", "reviewer": "ana", "token": token})
    thread.join(120)
    assert box["result"].approved, box
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(parents[0].id).state.name != "Awaiting approval"


def test_a_candidate_that_is_the_champion_ends_with_nothing_new_to_decide(
    lifecycle_settings: Settings, human_config, lineage
) -> None:
    from tuneline.stages.context import StageContext
    from tuneline.stages.promote import run_promote

    config = human_config(timeout_seconds=300)
    dataset, model, report, decision = lineage()
    first = run_promote(StageContext(lifecycle_settings), config, dataset, model, report, decision, {})
    same = report.model_copy(update={"champion_version": first.version})
    started = time.monotonic()
    result: Decision = _approve_flow(config, same, f"approve-{uuid.uuid4().hex[:8]}")()
    assert result.unchanged and not result.approved and result.decided_by == "policy"
    assert "nothing new to decide" in result.reasons[0] and time.monotonic() - started < 120
    last = AuditLog(ObjectStore(lifecycle_settings)).records(config.name)[-1]
    assert (last.kind, last.model_version) == ("approval", first.version)


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


def test_cli_rollback_needs_an_approved_target_or_a_reviewer_who_forces_it(
    lifecycle_settings: Settings, human_config, lineage, monkeypatch
) -> None:
    from tuneline.governance.registry import ModelRegistry
    from tuneline.stages.context import StageContext
    from tuneline.stages.promote import run_promote

    ctx = StageContext(lifecycle_settings)
    config = human_config()
    first = run_promote(ctx, config, *lineage(), {})
    rejected = run_promote(ctx, config, *lineage(approved=False, champion=first.version), {})
    refused = CliRunner().invoke(_cli(), ["rollback", config.name, "--to-version", rejected.version, "--actor", "mallory"])
    assert refused.exit_code == 2 and "was never approved" in refused.output, refused.output

    token = _enrol(lifecycle_settings, "ana")
    monkeypatch.setenv("TUNELINE_REVIEWER_TOKEN", "not-anas-token")
    wrong = CliRunner().invoke(_cli(), ["rollback", config.name, "--to-version", rejected.version, "--actor", "ana", "--force"])
    assert wrong.exit_code == 2 and "is wrong" in wrong.output, wrong.output
    assert str(ModelRegistry(ctx.mlflow).champion(config.name).version) == first.version

    monkeypatch.setenv("TUNELINE_REVIEWER_TOKEN", token)
    forced = CliRunner().invoke(_cli(), ["rollback", config.name, "--to-version", rejected.version, "--actor", "ana", "--force"])
    assert forced.exit_code == 0, forced.output
    assert str(ModelRegistry(ctx.mlflow).champion(config.name).version) == rejected.version
    records = AuditLog(ObjectStore(lifecycle_settings)).records(config.name)
    assert [(r.kind, r.actor, r.forced) for r in records[-2:]] == [("refused-approval", "ana", False), ("rollback", "ana", True)]
