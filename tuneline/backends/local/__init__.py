"""The local provider: tuning (Hugging Face TRL: SFT, DPO, KTO, GRPO), generation, token counting
and model logging on this machine. Imports of torch, transformers and TRL stay inside the methods
(and behind the lazy ``LocalBackend`` name), so resolving the provider is cheap.

Components: ``job`` (job directory, status, lock), ``data`` (records of each kind -> TRL datasets),
``chat_encoding`` (linear rendering, typed special tokens stay text), ``callbacks`` (the backend's
contracts as Trainer callbacks), ``rewards`` (graders as GRPO rewards), ``recipe`` (one attempt in
named phases), ``backend`` (the ``TuningBackend``), ``distributed`` / ``ranks`` / ``worker``
(torchrun), ``checkpoints`` (sealed, verified, mirrored to S3), ``hf_models`` (loading, placement),
``sequences`` (assistant-only encoding), ``generation`` (batched generation for evaluation),
``pyfunc`` (the MLflow model), ``gpu`` (refusals for GPU-only paths), ``tiny_model`` (models built
from a config for tests, examples and benchmarks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from tuneline.backends.base import JobSpec, TextGenerator, TuningBackend
    from tuneline.backends.provider import JudgeFunction, ModelServer
    from tuneline.config import JudgeConfig, PromotionConfig, RunConfig, TuneConfig
    from tuneline.data.tokens import TokenCounter
    from tuneline.lineage import TrainedModel
    from tuneline.settings import Settings
    from tuneline.storage.s3 import ObjectStore

__all__ = ["PROVIDER", "LocalBackend", "LocalProvider"]


def __getattr__(name: str) -> object:
    if name == "LocalBackend":  # torch comes with it: imported on first use only
        from tuneline.backends.local.backend import LocalBackend

        return LocalBackend
    raise AttributeError(name)


def _trust_remote_code(config: RunConfig) -> bool:
    # Off unless the local tune config turns it on (a Bedrock-tuned run evaluated locally: off).
    return bool(getattr(config.tune, "trust_remote_code", False))


class LocalProvider:
    name = "local"

    def tuner(self, settings: Settings, store: ObjectStore) -> TuningBackend:
        from tuneline.backends.local.backend import LocalBackend

        return LocalBackend(settings, store)

    def job_id(self, spec: JobSpec) -> str:
        return spec.identity  # the checkpoint prefix runs/<name>/<identity>/ is the job

    def expected_steps(self, tune: TuneConfig) -> int | None:
        return getattr(tune, "max_steps", None)

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
        from tuneline.backends.local.generation import LocalGenerator

        return LocalGenerator(
            model_uri or base_model,
            base_model=base_model if model_uri else None,
            label=label,
            settings=settings,
            store=store,
            trust_remote_code=_trust_remote_code(config),
        )

    def token_counter(self, config: RunConfig, settings: Settings, store: ObjectStore) -> TokenCounter | None:
        """The base model's own tokenizer, exact, when the data is prepared for local training."""
        from tuneline.config import Target

        if config.target is not Target.LOCAL:
            return None
        from tuneline.backends.local.hf_models import load_tokenizer, resolve_model_dir
        from tuneline.data.tokens import HFTokenCounter

        model_dir = resolve_model_dir(config.tune.base_model, store, settings.home / "cache" / "models")
        return HFTokenCounter(load_tokenizer(model_dir, _trust_remote_code(config)), name=config.tune.base_model)

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
        """Log the tuned weights as an MLflow pyfunc model that loads and generates offline."""
        import mlflow as mlflow_fluent

        from tuneline.backends.local.hf_models import resolve_model_dir
        from tuneline.backends.local.pyfunc import log_local_model

        cache = settings.home / "cache" / "models"
        model_dir = resolve_model_dir(model.model_uri, store, cache)
        full = getattr(config.tune, "adapter", None) == "full"
        base_dir = None if full else resolve_model_dir(config.tune.base_model, store, cache)
        # log_model needs mlflow's fluent "active run"; it is entered for this call only, and the
        # lifecycle sets the run's final status when it ends.
        with mlflow_fluent.start_run(run_id=run_id):
            info = log_local_model(model_dir, base_dir=base_dir, name="model")
        return info.model_uri

    def judge(self, config: JudgeConfig, settings: Settings) -> JudgeFunction | None:
        return None  # no local judge: evaluation.judge runs on Bedrock Runtime

    def server(self, promotion: PromotionConfig, settings: Settings, client: Any | None = None) -> ModelServer | None:
        # RunConfig refuses promotion.serving for local runs: the registered pyfunc model is what
        # serves (`mlflow models serve -m models:/<name>@champion`), and it follows the alias.
        return None


PROVIDER = LocalProvider()
