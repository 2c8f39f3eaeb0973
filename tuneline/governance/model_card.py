"""The model card: a markdown transparency record from which a reader can audit the model alone."""

from __future__ import annotations

from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion, Decision, EvaluationReport, TrainedModel

__all__ = ["MODEL_CARD_SECTIONS", "render_model_card"]

MODEL_CARD_SECTIONS = (
    "Intended use",
    "Base model",
    "Data",
    "Training",
    "Evaluation",
    "Approval",
    "Known limitations",
)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _customization(config: RunConfig) -> str:
    """How the model was customized: type, teacher or grader, and the kind of records it used."""
    from tuneline.config import BedrockTuneConfig

    tune = config.tune
    if not isinstance(tune, BedrockTuneConfig):
        kind = (config.data.kind or tune.record_kind).value
        return f"{tune.backend} {tune.method.upper()} training, {tune.adapter} weights; data: {kind} records"
    from tuneline.backends.bedrock.models import RECORD_KIND_BY_TYPE

    parts = [f"Bedrock {tune.customization_type}"]
    if tune.customization_type == "DISTILLATION" and tune.teacher_model:
        parts.append(f"teacher `{tune.teacher_model}`")
    if tune.grader is not None:
        graders = ", ".join(g.display_name for g in tune.grader.tuneline)
        parts.append(
            f"grader Lambda `{tune.grader.lambda_arn or 'not deployed'}`"
            + (f" running Tuneline graders {graders}" if graders else "")
        )
    parts.append(
        "data: Bedrock invocation logs"
        if tune.invocation_logs_s3_uri
        # the kind prepare was told to read (prompts for a distillation) over the type's usual one
        else f"data: {config.data.kind.value if config.data.kind else RECORD_KIND_BY_TYPE[tune.customization_type]} records"
    )
    return "; ".join(parts)


def render_model_card(
    config: RunConfig,
    version: str,
    dataset: DatasetVersion,
    model: TrainedModel,
    report: EvaluationReport,
    decision: Decision,
) -> str:
    tune = config.tune.model_dump(mode="json", exclude={"backend", "base_model"})
    lines = [
        f"# Model card: {config.name} v{version}",
        "",
        config.description or "",
        "",
        "## Intended use",
        config.promotion.intended_use,
        "",
        "## Base model",
        f"- `{model.base_model}` (backend: {model.backend})",
        "",
        "## Data",
        f"- Source: `{config.data.source}`",
        f"- Dataset version: `{dataset.version}` at `{dataset.uri}` (target format: {dataset.target})",
        f"- Records: {dataset.total} read, {dataset.accepted} accepted, {dataset.rejected} rejected, "
        f"{dataset.duplicates} duplicates, {dataset.filtered} filtered",
        "- Splits: " + ", ".join(f"{k} {v}" for k, v in dataset.splits.items()),
        "- Rejections by reason: " + (", ".join(f"{k} {v}" for k, v in dataset.errors.items()) or "none"),
        "- PII found: " + (", ".join(f"{k} {v}" for k, v in dataset.pii.items()) or "none")
        + f" (policy: {config.data.pii.model_dump(mode='json')})",
        f"- Tokens: {dataset.tokens}",
        "",
        "## Training",
        f"- Job: `{model.job_id}`; weights at `{model.model_uri}`",
        f"- Customized by: {_customization(config)}",
        f"- Final train loss {_fmt(model.final_train_loss)}, validation loss {_fmt(model.final_validation_loss)}, "
        f"{model.steps} steps",
        "- Hyperparameters:",
        *(f"  - {k}: {v}" for k, v in sorted(tune.items())),
        "",
        "## Evaluation",
        "| suite | metric | " + " | ".join(("candidate", "base", "champion")) + " | delta [95% CI] | n |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in report.comparisons:
        ci = f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]" if c.ci_low is not None else ""
        lines.append(
            f"| {c.suite} | {c.metric} | {_fmt(c.values.get('candidate'))} | {_fmt(c.values.get('base'))} | "
            f"{_fmt(c.values.get('champion'))} | {c.delta:+.4f} vs {c.baseline} {ci} | {c.n} |"
        )
    lines += [
        f"\nPer-example results: `{report.results_uri}`",
        "",
        "## Approval",
        f"- Decision: {'approved' if decision.approved else 'rejected'} by {decision.decided_by} "
        f"at {decision.decided_at.isoformat()}",
        *(f"- {reason}" for reason in decision.reasons),
        *( [f"- Comment: {decision.comment}"] if decision.comment else []),
        "",
        "| check | value | threshold | result |",
        "| --- | --- | --- | --- |",
        *(
            f"| {c.suite}/{c.metric} {c.check} | {_fmt(c.value)} | {_fmt(c.threshold)} | "
            f"{'pass' if c.passed else 'FAIL'} |"
            for c in decision.policy.checks
        ),
        "",
        "## Known limitations",
        config.promotion.limitations,
        "",
    ]
    return "\n".join(lines)
