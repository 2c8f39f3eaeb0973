"""The tuning backend interface every backend implements, and the text-generation interface
evaluation uses.

A job's identity is derived from (dataset version, base model, training config). Backends use it
to make submission idempotent: ``submit`` of a spec whose job already exists re-attaches to that
job (Bedrock: the same ``clientRequestToken``; local: the same checkpoint prefix) instead of
starting a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from tuneline.config import GenerationConfig, TuneConfig
from tuneline.lineage import DatasetVersion, JobState, TrainedModel
from tuneline.records import ChatRecord

__all__ = [
    "Generation",
    "JobSpec",
    "JobStatus",
    "MetricPoint",
    "MetricsSink",
    "ProgressCallback",
    "TextGenerator",
    "TuningBackend",
    "job_identity",
]


def job_identity(dataset_version: str, tune: TuneConfig) -> str:
    """A short, stable id for (dataset version, base model, training config).

    Options left unset (``None``) are left out, so that a release adding an optional setting does
    not rename every job: a job in flight across the upgrade re-attaches instead of starting a
    second, paid one. Defaults that are values stay in, so a changed default is a new job."""
    canonical = json.dumps(
        {"dataset": dataset_version, "tune": tune.model_dump(mode="json", exclude_none=True)}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


class JobSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The run's name: prefix of job and model names.")
    dataset: DatasetVersion
    tune: TuneConfig
    output_uri: str = Field(description="s3:// prefix where the job writes checkpoints and the model.")

    @property
    def identity(self) -> str:
        return job_identity(self.dataset.version, self.tune)


class JobStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    state: JobState
    message: str = ""
    steps: int = 0
    final_train_loss: float | None = None
    final_validation_loss: float | None = None


class MetricPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int
    name: str
    value: float


class MetricsSink(Protocol):
    """Where training metrics go (MLflow, batched). Must not block training for long."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


ProgressCallback = Callable[[JobStatus], None]


class TuningBackend(ABC):
    """One way of turning a prepared dataset and a base model into a tuned model."""

    name: str

    @abstractmethod
    def validate(self, spec: JobSpec) -> None:
        """Raise ``ValidationFailedError`` listing every bad value; return None when valid."""

    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Start the job, or re-attach to the existing job with the same identity; return its id."""

    @abstractmethod
    def status(self, job_id: str) -> JobStatus: ...

    @abstractmethod
    def wait(
        self,
        spec: JobSpec,
        job_id: str,
        sink: MetricsSink | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JobStatus:
        """Block until the job finishes, streaming metrics to ``sink``; return the final status."""

    @abstractmethod
    def metrics(self, job_id: str) -> list[MetricPoint]:
        """Every step-wise metric the job recorded, in step order."""

    @abstractmethod
    def fetch_model(self, spec: JobSpec, job_id: str) -> TrainedModel:
        """The finished job's model. Raises ``JobFailedError`` unless the job completed."""

    @abstractmethod
    def cancel(self, job_id: str) -> None: ...


class Generation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    latency_s: float
    """Seconds this answer took. Answers generated together in one batch each carry the batch's
    wall time divided by ``batch_size``, so that per-example latencies add up to the time spent."""
    output_tokens: int | None = None
    batch_size: int = 1
    """How many answers were generated together with this one (1: answered alone)."""


class TextGenerator(Protocol):
    """A model that answers chat prompts; the evaluate stage needs nothing more."""

    label: str

    def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
        """Answer each record's ``prompt_messages`` (its final assistant turn is ignored)."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...
