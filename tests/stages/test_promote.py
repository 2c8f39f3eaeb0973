"""Promotion and rollback against real MLflow and S3: aliases, lineage, card, audit, all-or-nothing."""

from __future__ import annotations

import json

import pytest

from tuneline.errors import PromotionError
from tuneline.governance.audit import AuditLog
from tuneline.governance.model_card import MODEL_CARD_SECTIONS
from tuneline.governance.registry import CHALLENGER, ModelRegistry
from tuneline.settings import Settings
from tuneline.stages.context import StageContext
from tuneline.stages.promote import run_promote, run_rollback
from tuneline.tags import MODEL_URI_TAG

pytestmark = [pytest.mark.service]

SUMMARY = {"task/exact_match": {"candidate": 0.8, "base": 0.1, "delta": 0.7}}


@pytest.fixture
def ctx(stack_settings: Settings) -> StageContext:
    return StageContext(stack_settings)


def test_approved_candidate_becomes_champion_with_lineage_card_and_audit(ctx, run_config, lineage) -> None:
    config = run_config()
    dataset, model, report, decision = lineage()
    ref = run_promote(ctx, config, dataset, model, report, decision, SUMMARY, flow_run_id="fr-1")

    # the challenger is the candidate under decision: once champion, it is no longer one
    assert ref.promoted and ref.aliases == ["champion"]
    version = ctx.mlflow.get_model_version(config.name, ref.version)
    tags = version.tags
    assert tags["tuneline.dataset_version"] == dataset.version
    assert tags["tuneline.job_id"] == model.job_id
    assert tags["tuneline.approved"] == "true"
    # what a reader of the registry needs is a tag; the rest is one lineage artifact
    assert set(tags) <= {
        "tuneline.dataset_version", "tuneline.base_model", "tuneline.backend", "tuneline.model_uri",
        "tuneline.config_hash", "tuneline.job_id", "tuneline.approved", "tuneline.decided_by",
        "tuneline.lineage_uri", "tuneline.model_card_uri", "tuneline.audit_record_uri",
    }, sorted(tags)
    lineage_doc = json.loads(ctx.store.get_bytes(tags["tuneline.lineage_uri"]))
    assert lineage_doc["flow_run_id"] == "fr-1" and lineage_doc["dataset"]["uri"] == dataset.uri
    assert lineage_doc["evaluation_summary"] == SUMMARY and lineage_doc["decision"]["approved"] is True
    card = ctx.store.get_bytes(tags["tuneline.model_card_uri"]).decode()
    for section in MODEL_CARD_SECTIONS:
        assert f"## {section}" in card
    assert dataset.version in card and "invalid_json 1" in card and "email 2" in card
    assert f"- Customized by: local {config.tune.method.upper()} training, {config.tune.adapter} weights; data: sft records" in card
    (record,) = AuditLog(ctx.store).records(config.name)
    assert (record.kind, record.model_version, record.new_champion) == ("promotion", ref.version, ref.version)
    assert tags["tuneline.audit_record_uri"].endswith(".jsonl")


def test_a_rejected_rerun_of_the_champions_job_leaves_the_champion_as_it_was(ctx, run_config, lineage) -> None:
    config = run_config()
    dataset, model, report, decision = lineage(job_id="same-job-identity-02")
    first = run_promote(ctx, config, dataset, model, report, decision, SUMMARY)
    before = ctx.mlflow.get_model_version(config.name, first.version)
    _, _, report2, rejected = lineage(approved=False, champion=first.version, job_id="same-job-identity-02")
    again = run_promote(ctx, config, dataset, model, report2, rejected, SUMMARY)
    after = ctx.mlflow.get_model_version(config.name, first.version)
    assert (again.version, again.promoted) == (first.version, False)
    assert after.tags == before.tags and after.tags["tuneline.approved"] == "true"
    assert sorted(after.aliases) == ["champion"]


def test_rejected_candidate_is_registered_but_not_promoted(ctx, run_config, lineage) -> None:
    config = run_config()
    dataset, model, report, decision = lineage(approved=False)
    ref = run_promote(ctx, config, dataset, model, report, decision, SUMMARY)
    assert not ref.promoted and ref.aliases == []
    assert ModelRegistry(ctx.mlflow).champion(config.name) is None
    assert ctx.mlflow.get_model_version(config.name, ref.version).tags["tuneline.approved"] == "false"
    assert ModelRegistry(ctx.mlflow).alias_version(config.name, CHALLENGER) is None


def test_rerun_of_the_same_job_reuses_its_version(ctx, run_config, lineage) -> None:
    config = run_config()
    dataset, model, report, decision = lineage(job_id="same-job-identity-01")
    first = run_promote(ctx, config, dataset, model, report, decision, SUMMARY)
    _, _, report2, decision2 = lineage(champion=first.version, job_id="same-job-identity-01")
    second = run_promote(ctx, config, dataset, model, report2, decision2, SUMMARY)
    assert first.version == second.version
    assert len(ctx.mlflow.search_model_versions(f"name = '{config.name}'")) == 1


def test_failure_after_the_alias_move_restores_the_registry(ctx, run_config, lineage) -> None:
    config = run_config()
    registry = ModelRegistry(ctx.mlflow)
    first = run_promote(ctx, config, *lineage(), SUMMARY)
    dataset, model, report, decision = lineage(champion=first.version)

    def failing_serving(ref):
        raise RuntimeError("provisioned throughput failed to come up")

    with pytest.raises(RuntimeError, match="provisioned throughput"):
        run_promote(ctx, config, dataset, model, report, decision, SUMMARY, serve=failing_serving)
    assert str(registry.champion(config.name).version) == first.version
    assert registry.alias_version(config.name, "previous") is None
    kinds = [r.kind for r in AuditLog(ctx.store).records(config.name)]
    assert kinds == ["promotion"]  # the failed promotion left no record


def test_rollback_restores_previous_champion_and_records_why(ctx, run_config, lineage) -> None:
    config = run_config()
    first = run_promote(ctx, config, *lineage(), SUMMARY)
    second = run_promote(ctx, config, *lineage(champion=first.version), SUMMARY)
    ref = run_rollback(ctx, config.name, None, actor="ana", reason="accuracy complaints")
    assert (ref.version, ref.previous_champion) == (first.version, second.version)
    assert str(ModelRegistry(ctx.mlflow).champion(config.name).version) == first.version
    record = AuditLog(ctx.store).records(config.name)[-1]
    assert (record.kind, record.actor, record.reasons[0]) == ("rollback", "ana", "accuracy complaints")
    assert not record.forced and "was approved in audit record" in record.reasons[1]
    assert (record.previous_champion, record.new_champion) == (second.version, first.version)


def test_rollback_to_a_version_never_approved_is_refused_unless_a_reviewer_forces_it(ctx, run_config, lineage) -> None:
    config = run_config()
    first = run_promote(ctx, config, *lineage(), SUMMARY)
    rejected = run_promote(ctx, config, *lineage(approved=False, champion=first.version), SUMMARY)
    with pytest.raises(PromotionError, match=f"version {rejected.version} .* was never approved"):
        run_rollback(ctx, config.name, rejected.version, actor="mallory", reason="trust me")
    assert str(ModelRegistry(ctx.mlflow).champion(config.name).version) == first.version
    assert [r.kind for r in AuditLog(ctx.store).records(config.name)] == ["promotion"]

    ref = run_rollback(ctx, config.name, rejected.version, actor="ana", reason="hotfix", forced_by="ana")
    assert ref.version == rejected.version
    record = AuditLog(ctx.store).records(config.name)[-1]
    assert (record.kind, record.actor, record.forced, record.authenticated) == ("rollback", "ana", True, True)
    assert any("forced by ana" in reason for reason in record.reasons)


def test_an_approval_forged_beside_the_audit_chain_does_not_open_rollback(ctx, run_config, lineage) -> None:
    """The attack: a record written straight into audit/ (any holder of the audit writer's key can)
    claiming a person approved the rejected version. It is not on the anchored chain, so rollback
    still refuses, and verify names it as inserted."""
    config = run_config()
    first = run_promote(ctx, config, *lineage(), SUMMARY)
    rejected = run_promote(ctx, config, *lineage(approved=False, champion=first.version), SUMMARY)
    assert (rejected.promoted, rejected.champion) == (False, first.version)  # what the summary names
    weights = ctx.mlflow.get_model_version(config.name, rejected.version).tags[MODEL_URI_TAG]
    log = AuditLog(ctx.store, ctx.mlflow)
    (promotion,) = log.records(config.name)
    forged = promotion.model_copy(update={
        "kind": "approval", "approved": True, "candidate_uri": weights, "actor": "alice", "authenticated": True,
        "sequence": promotion.sequence + 1, "new_champion": None,
    })
    key = f"audit/{config.name}/{forged.sequence:010d}-approval.jsonl"
    ctx.store.put_bytes(ctx.store.uri(key), (forged.model_dump_json() + "\n").encode(), "application/jsonl")
    assert [r.kind for r in log.records(config.name)] == ["promotion", "approval"]  # readable, listed
    assert [r.kind for r in log.trusted_records(config.name)] == ["promotion"]  # but not vouched for

    with pytest.raises(PromotionError, match=f"version {rejected.version} .* was never approved .*audit --verify"):
        run_rollback(ctx, config.name, rejected.version, actor="mallory", reason="alice said so")
    assert str(ModelRegistry(ctx.mlflow).champion(config.name).version) == first.version
    assert any(p.key == key and "inserted record" in p.problem for p in log.verify([config.name]))


def test_rollback_of_an_unknown_model_says_no_such_model(ctx) -> None:
    with pytest.raises(PromotionError, match="no such model 'no-such-model'"):
        run_rollback(ctx, "no-such-model", None, actor="ana", reason="x")


def test_rollback_repoints_bedrock_serving_at_the_restored_champion(ctx, run_config, lineage) -> None:
    import boto3
    from botocore.stub import Stubber

    from tuneline.config import PromotionConfig

    config = run_config().model_copy(update={"promotion": PromotionConfig(serving="provisioned-throughput")})
    arn = "arn:aws:bedrock:us-west-2:123456789012:provisioned-model/pt1"
    first_model = "arn:aws:bedrock:us-west-2:123456789012:custom-model/v1"
    second_model = "arn:aws:bedrock:us-west-2:123456789012:custom-model/v2"
    dataset, model, report, decision = lineage()
    first = run_promote(ctx, config, dataset, model.model_copy(update={"model_uri": first_model, "backend": "bedrock", "mlflow_model_uri": "s3://b/m1/"}), report, decision,
                        SUMMARY, serve=lambda ref: arn)
    dataset, model, report, decision = lineage(champion=first.version)
    run_promote(ctx, config, dataset, model.model_copy(update={"model_uri": second_model, "backend": "bedrock", "mlflow_model_uri": "s3://b/m2/"}), report, decision,
                SUMMARY, serve=lambda ref: arn)

    def throughput(status: str, model_arn: str, desired: str | None = None) -> dict:
        return {"modelUnits": 1, "desiredModelUnits": 1, "provisionedModelName": "pt1", "provisionedModelArn": arn,
                "modelArn": model_arn, "desiredModelArn": desired or model_arn,
                "foundationModelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-micro-v1:0",
                "status": status, "creationTime": "2026-11-22T00:00:00Z", "lastModifiedTime": "2026-11-22T00:00:00Z"}

    client = boto3.client("bedrock", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_response("get_provisioned_model_throughput", throughput("InService", second_model))
        stub.add_response("update_provisioned_model_throughput", {},
                          {"provisionedModelId": arn, "desiredModelId": first_model})
        stub.add_response("get_provisioned_model_throughput", throughput("InService", first_model))
        ref = run_rollback(ctx, config.name, None, actor="ana", reason="regression", bedrock_client=client)
        stub.assert_no_pending_responses()
    assert ref.version == first.version
