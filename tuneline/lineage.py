"""What each stage hands to the next: small records of URIs, identities and numbers.

A stage never returns a DataFrame or a model. These records are what Prefect stores as task
results and what cache keys are built from, so any stage can be re-run from its inputs alone.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tuneline.config import Target

__all__ = [
    "CheckResult",
    "DatasetCounts",
    "DatasetVersion",
    "Decision",
    "EvaluationReport",
    "JobState",
    "LifecycleSummary",
    "MetricComparison",
    "ModelVersionRef",
    "PolicyResult",
    "TrainedModel",
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetCounts(_Record):
    """What prepare counted, declared once: the prepare summary and every dataset version hold it.
    ``total = accepted + rejected + duplicates + filtered``."""

    target: Target
    total: int
    accepted: int
    rejected: int
    duplicates: int
    filtered: int = 0
    splits: dict[str, int] = Field(description="split name -> record count")
    tokens: int
    errors: dict[str, int] = Field(default_factory=dict, description="error code -> count")
    pii: dict[str, int] = Field(default_factory=dict, description="PII type -> count")
    estimated_cost_usd: float | None = None


class DatasetVersion(DatasetCounts):
    """A prepared, immutable dataset: ``uri`` is ``s3://bucket/datasets/<name>/<version>/``."""

    name: str
    version: str = Field(description="Content hash of the prepared data and the prepare config.")
    uri: str
    split_uris: dict[str, str] = Field(description="split name -> s3:// URI of its JSONL")


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED)


class TrainedModel(_Record):
    """A tuned candidate: where its weights are, and how it was made."""

    backend: str
    job_id: str = Field(description="Derived from dataset version, base model and training config.")
    base_model: str
    model_uri: str = Field(description="s3:// prefix of the adapter/weights, or a Bedrock model ARN.")
    mlflow_model_uri: str | None = Field(default=None, description="models:/ or runs:/ URI of the logged model.")
    final_train_loss: float | None = None
    final_validation_loss: float | None = None
    steps: int = 0
    tokens_per_second: float | None = None


class MetricComparison(_Record):
    """One metric on one suite: each model's value and the candidate's delta against the baseline."""

    suite: str
    metric: str
    values: dict[str, float] = Field(description="model label (candidate/base/champion) -> value")
    baseline: str = Field(description="The label the delta is taken against: champion, else base.")
    delta: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int
    higher_is_better: bool = True
    called: bool = Field(default=True, description="False when n is too small to call a difference.")


class EvaluationReport(_Record):
    candidate_uri: str
    champion_version: str | None = None
    comparisons: list[MetricComparison]
    results_uri: str = Field(description="s3:// URI of the per-example Parquet results.")

    def comparison(self, suite: str, metric: str) -> MetricComparison | None:
        return next((c for c in self.comparisons if c.suite == suite and c.metric == metric), None)


class CheckResult(_Record):
    suite: str
    metric: str
    check: str = Field(description="min_value, min_gain, significant or max_regression")
    value: float | None
    threshold: float | None
    passed: bool
    borderline: bool = False
    detail: str = ""


class PolicyResult(_Record):
    passed: bool
    needs_human: bool
    checks: list[CheckResult]


class Decision(_Record):
    approved: bool
    decided_by: str = Field(description="Reviewer name, or 'policy' for automatic decisions.")
    decided_at: datetime
    reasons: list[str]
    comment: str = ""
    policy: PolicyResult
    unchanged: bool = Field(
        default=False, description="The candidate is the champion already (same job): nothing was put to anyone."
    )


class ModelVersionRef(_Record):
    name: str
    version: str
    aliases: list[str] = Field(default_factory=list)
    promoted: bool = False
    previous_champion: str | None = None
    champion: str | None = Field(default=None, description="The champion once this decision was made (unchanged by a rejection).")


class LifecycleSummary(_Record):
    """What one lifecycle run produced, with the addresses a person opens to look at it."""

    model_name: str
    flow_run_id: str | None
    flow_run_url: str | None
    mlflow_run_id: str
    mlflow_run_url: str
    dataset: DatasetVersion
    model: TrainedModel
    decision: Decision
    version: ModelVersionRef
    model_version_url: str
    metrics: dict[str, dict[str, float]] = Field(description="suite/metric -> model label -> value")
