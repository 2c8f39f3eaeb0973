"""The provider protocol: everything the stages need from one backend, behind one object.

A provider is found by the run config's ``tune.backend`` name through
:mod:`tuneline.backends.registry`, which imports it only when asked for: a Bedrock run never
imports torch, a local run never imports the Bedrock clients. Stages, tasks and the CLI talk to
backends only through this protocol (import-linter enforces it, see pyproject.toml).

Implementations must keep their heavy imports (torch, transformers, boto3 clients) inside the
methods, so that importing the provider's module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from tuneline.backends.base import JobSpec, TextGenerator, TuningBackend
    from tuneline.config import JudgeConfig, PromotionConfig, RunConfig, TuneConfig
    from tuneline.data.tokens import TokenCounter
    from tuneline.lineage import TrainedModel
    from tuneline.settings import Settings
    from tuneline.storage.s3 import ObjectStore

__all__ = ["BackendProvider", "JudgeFunction", "ModelServer"]

# (prompt, answer, reference) triples -> one score in 0..1 each; the evaluation runner's ``Judge``.
JudgeFunction = Callable[[Sequence[tuple[str, str, str]]], Sequence[float]]
# (registered model name, the version's model URI) -> the id of the endpoint now serving it.
ModelServer = Callable[[str, str], str | None]


@runtime_checkable
class BackendProvider(Protocol):
    """One backend: its tuner, generator, token counter, model logger and (where it has one) judge."""

    name: str  # the ``tune.backend`` value it serves

    def tuner(self, settings: Settings, store: ObjectStore) -> TuningBackend:
        """The backend that validates, submits, waits for, fetches and cancels tuning jobs."""
        ...

    def job_id(self, spec: JobSpec) -> str:
        """The backend's id of the job ``spec`` identifies, whether or not it exists yet."""
        ...

    def expected_steps(self, tune: TuneConfig) -> int | None:
        """How many steps the job will take, where the config says (for progress bars)."""
        ...

    def generator(
        self,
        config: RunConfig,
        *,
        label: str,
        model_uri: str | None,
        base_model: str,
        settings: Settings,
        store: ObjectStore,
    ) -> TextGenerator:
        """A model answering chat prompts: the tuned ``model_uri`` on ``base_model``, or the base alone."""
        ...

    def token_counter(self, config: RunConfig, settings: Settings, store: ObjectStore) -> TokenCounter | None:
        """The exact counter for the data target, or None where prepare's estimate applies."""
        ...

    def log_model(
        self,
        config: RunConfig,
        model: TrainedModel,
        *,
        mlflow: MlflowClient,
        run_id: str,
        settings: Settings,
        store: ObjectStore,
    ) -> str:
        """Log the tuned model into the MLflow run; return the URI a registry version points at."""
        ...

    def judge(self, config: JudgeConfig, settings: Settings) -> JudgeFunction | None:
        """An LLM judge scoring answers against a rubric, or None where the backend has none."""
        ...

    def server(self, promotion: PromotionConfig, settings: Settings, client: Any | None = None) -> ModelServer | None:
        """What points serving at a promoted (or restored) champion as ``promotion.serving`` asks;
        None when serving is off. ``client``: the backend's API client, for tests and reuse."""
        ...
