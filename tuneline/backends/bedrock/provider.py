"""The Bedrock ``BackendProvider`` that ``tuneline.backends.registry`` names (``PROVIDER``).

Written first by the registry's author (issue 16) as an adapter over the Bedrock classes, taken into
this package by the move (issue 17). Imports stay inside the methods: resolving the provider imports
no boto3 client code, and a Bedrock run never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import date
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from tuneline.backends.base import JobSpec, TextGenerator, TuningBackend
    from tuneline.backends.bedrock.dry_run import DryRun
    from tuneline.backends.provider import JudgeFunction, ModelServer
    from tuneline.config import JudgeConfig, PromotionConfig, RunConfig, TuneConfig
    from tuneline.data.tokens import TokenCounter
    from tuneline.lineage import TrainedModel
    from tuneline.settings import Settings
    from tuneline.storage.s3 import ObjectStore

__all__ = ["PROVIDER", "BedrockProvider"]


class BedrockProvider:
    name = "bedrock"

    def tuner(self, settings: Settings, store: ObjectStore) -> TuningBackend:
        from tuneline.backends.bedrock import BedrockBackend

        return BedrockBackend(settings, store=store)

    def job_id(self, spec: JobSpec) -> str:
        from tuneline.backends.bedrock import bedrock_job_name

        return bedrock_job_name(spec.name, spec.identity)

    def expected_steps(self, tune: TuneConfig) -> int | None:
        return None  # Bedrock decides the number of steps from the data and its hyperparameters

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
        """The base model on demand by its id; a custom model through an endpoint that serves it
        (found, or made for the evaluation and deleted on ``close()``: ``runtime.evaluation_generator``)."""
        from tuneline.backends.bedrock.api import make_bedrock_client
        from tuneline.backends.bedrock.runtime import evaluation_generator

        return evaluation_generator(
            config,
            label=label,
            model_uri=model_uri,
            base_model=base_model,
            runtime=make_bedrock_client(settings, "bedrock-runtime"),
            bedrock=lambda: make_bedrock_client(settings),
        )

    def token_counter(self, config: RunConfig, settings: Settings, store: ObjectStore) -> TokenCounter | None:
        return None  # prepare uses AWS's documented estimate for Bedrock targets

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
        # MLflow cannot register an ARN as a version's source: register a small reference
        # artifact on the run instead; the ARN itself travels in the version's lineage tags.
        mlflow.log_dict(run_id, model.model_dump(mode="json"), "bedrock_model/reference.json")
        return f"runs:/{run_id}/bedrock_model"

    def judge(self, config: JudgeConfig, settings: Settings) -> JudgeFunction | None:
        from tuneline.backends.bedrock.runtime import BedrockJudge, JudgeItem

        judge = BedrockJudge.from_settings(config, settings)

        def score(items: Sequence[tuple[str, str, str]]) -> list[float]:
            verdicts = judge.score([JudgeItem(prompt=p, answer=a, reference=r) for p, a, r in items])
            return [v.score for v in verdicts]

        return score

    def server(self, promotion: PromotionConfig, settings: Settings, client: Any | None = None) -> ModelServer | None:
        """Provisioned throughput or an on-demand deployment named after the registered model,
        re-pointed at each new champion's custom model ARN (``tuneline.backends.bedrock.serving``)."""
        if promotion.serving == "none":
            return None
        from tuneline.backends.bedrock.api import make_bedrock_client
        from tuneline.backends.bedrock.serving import ensure_serving, serving_name

        bedrock = client if client is not None else make_bedrock_client(settings)

        def serve(model_name: str, model_arn: str) -> str | None:
            endpoint = ensure_serving(bedrock, promotion, serving_name(model_name), model_arn)
            return endpoint.arn if endpoint else None

        return serve

    # --- Bedrock-only entry points, for the CLI (which reaches backends only through the registry)
    def models_table(self) -> list[dict[str, object]]:
        """One row per base model in the table: what ``tuneline models`` lists."""
        from tuneline.backends.bedrock.models import BEDROCK_MODELS

        return [
            {
                "model_id": spec.model_id,
                "label": spec.label,
                "customization_types": list(spec.customization_types),
                "regions": list(spec.regions),
                "lifecycle": spec.lifecycle,
                "legacy_since": spec.legacy_since.isoformat() if spec.legacy_since else None,
                "end_of_life": spec.end_of_life.isoformat() if spec.end_of_life else None,
                "teachers": list(spec.teachers),
                "record_format": spec.record_format,
                "serving": spec.serving,
                "source": spec.lifecycle_source or spec.source,
            }
            for spec in sorted(BEDROCK_MODELS.values(), key=lambda s: s.model_id)
        ]

    def preflight(self, config: RunConfig, today: date | None = None) -> str | None:
        """Raise ``ModelRetiredError`` past the model's end of life; the legacy warning otherwise."""
        from tuneline.backends.bedrock.backend import utc_today
        from tuneline.backends.bedrock.models import bedrock_model_spec, check_lifecycle
        from tuneline.config import BedrockTuneConfig

        tune = config.tune
        if not isinstance(tune, BedrockTuneConfig):
            return None
        model = bedrock_model_spec(tune.base_model, tune.model_limits)
        return check_lifecycle(model, today or utc_today(), tune.customization_type, teacher=tune.teacher_model)

    def dry_run(
        self,
        config: RunConfig,
        dataset: Path,
        settings: Settings,
        *,
        prices: Path | None = None,
        today: date | None = None,
    ) -> DryRun:
        """The request, cost estimate and problems of a job, without credentials or network."""
        from tuneline.backends.bedrock.dry_run import dry_run

        return dry_run(
            config,
            dataset,
            bucket=settings.s3_bucket,
            region=settings.bedrock_region,
            today=today,
            prices=prices,
        )


PROVIDER = BedrockProvider()
