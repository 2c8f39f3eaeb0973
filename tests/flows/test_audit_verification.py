"""The scheduled audit check on a real Prefect server, SeaweedFS and MLflow: an intact log completes,
a tampered one fails the run (which the failure automation notifies about) and its artifact names
the record; the reviewers' enrolments are checked the same way."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from tuneline.governance.approval import ApprovalRecord
from tuneline.governance.audit import AuditLog
from tuneline.settings import Settings
from tuneline.stages.context import StageContext

pytestmark = [pytest.mark.slow, pytest.mark.service]


def _artifact(flow_run_id: uuid.UUID, key: str) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        ))
    return artifact.data


def test_a_rewritten_record_fails_the_run_and_the_artifact_names_it(lifecycle_settings: Settings) -> None:
    from flows.audit import verify_audit
    from tasks.tracking import artifact_key

    ctx = StageContext(lifecycle_settings)
    model = f"verify-{uuid.uuid4().hex[:8]}"
    log = AuditLog(ctx.store, ctx.mlflow)
    uris = [
        log.append(ApprovalRecord(kind="approval", model_name=model, recorded_at=datetime.now(UTC), actor="policy",
                                  approved=True, reasons=[f"r{i}"]))
        for i in range(3)
    ]
    key = artifact_key(model, "audit-verification")

    intact = verify_audit(model, return_state=True)
    assert intact.is_completed() and intact.result() == [model]
    assert "## Audit log verified" in _artifact(intact.state_details.flow_run_id, key)

    # an approval rewritten with the audit writer's key (a new version over the record)
    forged = json.loads(ctx.store.get_bytes(uris[1]))
    forged["actor"] = "mallory"
    ctx.store.put_bytes(uris[1], (json.dumps(forged) + "\n").encode())
    tampered = verify_audit(model, return_state=True)
    assert tampered.is_failed()
    assert "1 audit problem(s)" in tampered.message and "record 2 was rewritten" in tampered.message
    report = _artifact(tampered.state_details.flow_run_id, key)
    assert "## Audit log: 1 problem(s)" in report and "record 2 was rewritten" in report
    assert uris[1].split("/", 3)[-1] in report


def test_a_credential_written_outside_tuneline_fails_the_check_of_the_enrolments(lifecycle_settings: Settings) -> None:
    from flows.audit import verify_audit
    from tasks.tracking import artifact_key
    from tests.governance.test_reviewers import _forge
    from tuneline.governance.reviewers import ReviewerRegistry

    ctx = StageContext(lifecycle_settings)
    registry = ReviewerRegistry(ctx.store, ctx.mlflow)
    forged = f"forged-{uuid.uuid4().hex[:8]}"
    _forge(registry, forged)
    state = verify_audit(registry.chain, return_state=True)
    assert state.is_failed()
    report = _artifact(state.state_details.flow_run_id, artifact_key(registry.chain, "audit-verification"))
    assert f"audit/_reviewers/{forged}.json" in report and "has no enrolment record" in report


def test_a_mistyped_model_name_fails_the_run_instead_of_passing_as_verified(lifecycle_settings: Settings) -> None:
    from flows.audit import verify_audit

    state = verify_audit(f"no-such-model-{uuid.uuid4().hex[:6]}", return_state=True)
    assert state.is_failed() and "no such model" in state.message, state.message
