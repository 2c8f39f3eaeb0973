"""Stage 5, promote: register the candidate with its lineage and move the aliases, all or nothing.

The caller must serialise promotions per model name (the Prefect layer holds a strict global
concurrency limit); within that, promotion is compare-then-set against the champion that was
evaluated, and every failure after the alias move puts the registry back as it was.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tuneline.backends.registry import provider
from tuneline.config import PromotionConfig, RunConfig
from tuneline.errors import PromotionError
from tuneline.governance.approval import ApprovalRecord
from tuneline.governance.audit import AuditLog
from tuneline.governance.model_card import render_model_card
from tuneline.governance.registry import CHALLENGER, PREVIOUS, ModelRegistry
from tuneline.lineage import DatasetVersion, Decision, EvaluationReport, ModelVersionRef, TrainedModel
from tuneline.stages.context import StageContext
from tuneline.stages.evaluate import BACKEND_TAG, BASE_MODEL_TAG, MODEL_URI_TAG

__all__ = [
    "LINEAGE_URI_TAG",
    "SERVING_TAG",
    "approval_covering",
    "model_serving",
    "lineage_document",
    "lineage_tags",
    "run_promote",
    "run_rollback",
]


SERVING_TAG = "tuneline.serving"
LINEAGE_URI_TAG = "tuneline.lineage_uri"  # the one lineage artifact with everything the tags leave out
APPROVED_TAG = "tuneline.approved"
DECIDED_BY_TAG = "tuneline.decided_by"


def model_serving(
    ctx: StageContext, promotion: PromotionConfig, backend: str, client: Any | None = None
) -> Callable[[ModelVersionRef], str | None] | None:
    """The serving step for promotion and rollback, when ``promotion`` asks ``backend`` to serve.

    It reads the version's model URI (a Bedrock custom model ARN) from its lineage tag, so rollback
    re-points serving at exactly the model the restored champion names.
    """
    server = provider(backend).server(promotion, ctx.settings, client)
    if server is None:
        return None

    def serve(ref: ModelVersionRef) -> str | None:
        return server(ref.name, ctx.mlflow.get_model_version(ref.name, ref.version).tags[MODEL_URI_TAG])

    return serve


def _serving_of(ctx: StageContext, version: Any | None) -> PromotionConfig | None:
    """How a promoted version was served (recorded at promotion), so rollback can re-point it."""
    recorded = (version.tags or {}).get(SERVING_TAG) if version is not None else None
    return PromotionConfig.model_validate_json(recorded) if recorded else None


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lineage_tags(
    config: RunConfig, dataset: DatasetVersion, model: TrainedModel, flow_run_id: str | None = None
) -> dict[str, str]:
    """The few tags a reader of the registry (and Tuneline itself: evaluate, retraining, serving)
    needs on the version; everything else is in the lineage artifact (``lineage_document``)."""
    del flow_run_id  # in the lineage artifact; kept as a parameter for callers of the old signature
    return {
        "tuneline.dataset_version": dataset.version,
        BASE_MODEL_TAG: model.base_model,
        BACKEND_TAG: model.backend,
        MODEL_URI_TAG: model.model_uri,
        "tuneline.config_hash": config.config_hash(),
    }


def lineage_document(
    config: RunConfig,
    dataset: DatasetVersion,
    model: TrainedModel,
    decision: Decision,
    evaluation_summary: dict[str, dict[str, float]],
    flow_run_id: str | None,
    mlflow_run_id: str | None,
) -> dict[str, Any]:
    return {
        "model_name": config.name,
        "config_hash": config.config_hash(),
        "git_commit": _git_commit(),
        "flow_run_id": flow_run_id,
        "mlflow_run_id": mlflow_run_id,
        "dataset": dataset.model_dump(mode="json"),
        "model": model.model_dump(mode="json"),
        "decision": decision.model_dump(mode="json"),
        "evaluation_summary": evaluation_summary,
    }


def run_promote(
    ctx: StageContext,
    config: RunConfig,
    dataset: DatasetVersion,
    model: TrainedModel,
    report: EvaluationReport,
    decision: Decision,
    evaluation_summary: dict[str, dict[str, float]],
    flow_run_id: str | None = None,
    serve: Callable[[ModelVersionRef], str | None] | None = None,
) -> ModelVersionRef:
    """Register the candidate; when approved, make it champion (old champion becomes ``previous``).

    ``serve`` (Bedrock serving, optional) runs after the alias move; if it or any later step fails
    the aliases are restored and the error propagates.
    """
    registry = ModelRegistry(ctx.mlflow)
    serve = serve if serve is not None else model_serving(ctx, config.promotion, config.tune.backend)
    source = model.mlflow_model_uri or model.model_uri
    existing = registry.version_for_job(config.name, model.job_id)
    version = existing or registry.register(
        config.name, source, model.job_id, lineage_tags(config, dataset, model), run_id=ctx.run_id
    )
    number = str(version.version)
    champion_now = registry.champion(config.name) if existing is not None else None
    is_champion = champion_now is not None and str(champion_now.version) == str(version.version)
    if existing is not None and (not decision.approved or is_champion):
        # A re-run of the same job: its decision is this run's (MLflow run + audit log); the
        # version keeps the tags and aliases of the run that registered or promoted it.
        return registry.ref(config.name, number, promoted=False)
    lineage_uri = ctx.store.put_bytes(
        ctx.store.uri(f"models/{config.name}/v{number}/lineage.json"),
        json.dumps(
            lineage_document(config, dataset, model, decision, evaluation_summary, flow_run_id, ctx.run_id), indent=2
        ).encode(),
        "application/json",
    )
    registry.set_tags(
        config.name,
        number,
        {
            APPROVED_TAG: str(decision.approved).lower(),
            DECIDED_BY_TAG: decision.decided_by,
            LINEAGE_URI_TAG: lineage_uri,
        },
    )
    if not decision.approved:
        return registry.ref(config.name, number, promoted=False)

    registry.set_alias(config.name, CHALLENGER, number)
    before_champion = report.champion_version
    before_previous = registry.alias_version(config.name, PREVIOUS)
    before_previous_version = str(before_previous.version) if before_previous is not None else None
    old = registry.promote(config.name, number, expected_champion=before_champion)
    audit = AuditLog(ctx.store, ctx.mlflow)
    try:
        card = render_model_card(config, number, dataset, model, report, decision)
        card_uri = ctx.store.put_bytes(
            ctx.store.uri(f"models/{config.name}/v{number}/MODEL_CARD.md"), card.encode(), "text/markdown"
        )
        serving_arn = serve(registry.ref(config.name, number)) if serve is not None else None
        record_uri = audit.append(
            ApprovalRecord(
                kind="promotion",
                model_name=config.name,
                model_version=number,
                recorded_at=datetime.now(UTC),
                actor=decision.decided_by,
                approved=True,
                reasons=decision.reasons,
                comment=decision.comment,
                decision=decision,
                evaluation_summary=evaluation_summary,
                flow_run_id=flow_run_id,
                mlflow_run_id=ctx.run_id,
                previous_champion=old,
                new_champion=number,
                candidate_uri=model.model_uri,
                authenticated=decision.decided_by != "policy",
            )
        )
        tags = {"tuneline.model_card_uri": card_uri, "tuneline.audit_record_uri": record_uri}
        if serving_arn:
            tags["tuneline.serving_arn"] = serving_arn
            tags[SERVING_TAG] = config.promotion.model_dump_json(include={"serving", "provisioned_model_units"})
        registry.set_tags(config.name, number, tags)
        ctx.mlflow.update_model_version(config.name, number, description=card)
        if ctx.run_id:
            ctx.mlflow.log_text(ctx.run_id, card, "promote/MODEL_CARD.md")
    except BaseException:
        registry.restore(config.name, champion=before_champion, previous=before_previous_version)
        raise
    # the challenger is the candidate under decision; once champion it is no longer one
    registry.delete_alias(config.name, CHALLENGER)
    return registry.ref(config.name, number, promoted=True, previous=old)


def approval_covering(ctx: StageContext, model_name: str, version: str) -> ApprovalRecord | None:
    """The audit record that approved ``version`` (its promotion, or an approval of its weights),
    among the records the anchored chain vouches for: one written beside the chain approves nothing."""
    mv = ctx.mlflow.get_model_version(model_name, version)
    weights = (mv.tags or {}).get(MODEL_URI_TAG)
    for record in reversed(AuditLog(ctx.store, ctx.mlflow).trusted_records(model_name)):
        if record.kind == "promotion" and record.new_champion == version:
            return record
        if record.kind == "approval" and record.approved and weights and record.candidate_uri == weights:
            return record
    return None


def run_rollback(
    ctx: StageContext,
    model_name: str,
    to_version: str | None,
    actor: str,
    reason: str,
    serve: Callable[[ModelVersionRef], str | None] | None = None,
    bedrock_client: Any | None = None,
    forced_by: str | None = None,
) -> ModelVersionRef:
    """Move ``champion`` back; re-point Bedrock serving when the champion was served; audit it.

    Only to a version an approval record covers, unless ``forced_by`` names a reviewer the caller
    has authenticated (``tuneline.governance.reviewers``); the forced rollback is audited as such.
    """
    registry = ModelRegistry(ctx.mlflow)
    if registry.client_model(model_name) is None:
        raise PromotionError(f"no such model {model_name!r} in the registry")
    before_champion = registry.champion(model_name)
    before_previous = registry.alias_version(model_name, PREVIOUS)
    target = to_version
    if target is None:
        if before_previous is None:
            raise PromotionError(f"model {model_name!r} has no 'previous' version to roll back to; pass --to-version")
        target = str(before_previous.version)
    if registry.version(model_name, target) is None:
        raise PromotionError(f"model {model_name!r} has no version {target}")
    covering = approval_covering(ctx, model_name, target)
    if covering is None and forced_by is None:
        raise PromotionError(
            f"version {target} of {model_name!r} was never approved (no approval or promotion record on the audit "
            "chain covers it; `tuneline audit --verify` names records off it); an enrolled reviewer may force it: "
            "tuneline rollback ... --force --reviewer NAME"
        )
    if serve is None and (serving := _serving_of(ctx, before_champion)) is not None:
        # Only Bedrock versions record serving; one registered before the backend tag existed is one.
        backend = (before_champion.tags or {}).get(BACKEND_TAG, "bedrock")
        serve = model_serving(ctx, serving, backend, client=bedrock_client)
    old, new = registry.rollback(model_name, target)
    try:
        if serve is not None:
            serve(registry.ref(model_name, new))
        reasons = [reason]
        if covering is None:
            reasons.append(f"forced by {forced_by}: version {new} has no approval record")
        else:
            reasons.append(f"version {new} was approved in audit record {covering.sequence} ({covering.kind} by {covering.actor})")
        AuditLog(ctx.store, ctx.mlflow).append(
            ApprovalRecord(
                kind="rollback",
                model_name=model_name,
                model_version=new,
                recorded_at=datetime.now(UTC),
                actor=forced_by or actor,
                reasons=reasons,
                previous_champion=old,
                new_champion=new,
                authenticated=forced_by is not None,
                forced=covering is None,
            )
        )
    except BaseException:
        registry.restore(
            model_name,
            champion=str(before_champion.version) if before_champion else None,
            previous=str(before_previous.version) if before_previous else None,
        )
        raise
    return registry.ref(model_name, new, promoted=True, previous=old)
