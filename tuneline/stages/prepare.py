"""Stage 1, prepare: validate, clean, split and version the data; record it in MLflow."""

from __future__ import annotations

import hashlib
import json
import time

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric

from tuneline.backends.registry import provider_for
from tuneline.config import RunConfig, Target
from tuneline.data.fingerprint import source_fingerprint
from tuneline.data.prepare import PIPELINE_REVISION, PreparedDataset, prepare
from tuneline.data.tokens import TokenCounter
from tuneline.data.versions import load_dataset_version
from tuneline.stages.context import StageContext
from tuneline.storage.tracking import unreachable_as_service_error

__all__ = ["build_dataset_version", "prepare_cache_key", "record_dataset_version", "run_prepare"]


def prepare_cache_key(ctx: StageContext, config: RunConfig) -> str:
    """Same rules, source content, prepare config, target and tokenizer -> same key (and same version)."""
    identity = {
        # The rules' revision: a cached outcome from older rules must not stand in for new ones.
        "pipeline": PIPELINE_REVISION,
        "source": source_fingerprint(config.data.source, ctx.store),
        "data": config.data.model_dump(mode="json", exclude={"source"}),
        "target": str(config.target),
        "name": config.dataset_name,
        "tokenizer": config.tune.base_model if config.target is Target.LOCAL else None,
        # The cached value's shape: a result written as another model (an older release's) cannot
        # be read back as this one, so it must not be found either.
        "result": hashlib.sha256(
            json.dumps(PreparedDataset.model_json_schema(), sort_keys=True).encode()
        ).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@unreachable_as_service_error()
def build_dataset_version(ctx: StageContext, config: RunConfig) -> PreparedDataset:
    """Validate, clean, split and publish the dataset version (a no-op rewrite when it exists)."""
    return prepare(
        config.data,
        target=config.target,
        name=config.dataset_name,
        store=ctx.store,
        token_counter=_token_counter(ctx, config),
    )


@unreachable_as_service_error()
def record_dataset_version(ctx: StageContext, outcome: PreparedDataset) -> None:
    """Check the version is still published, then log it into the run's MLflow record."""
    load_dataset_version(ctx.store, outcome.dataset.uri)
    if ctx.run_id:
        _log_to_mlflow(ctx, outcome)


def run_prepare(ctx: StageContext, config: RunConfig) -> PreparedDataset:
    outcome = build_dataset_version(ctx, config)
    record_dataset_version(ctx, outcome)
    return outcome


def _token_counter(ctx: StageContext, config: RunConfig) -> TokenCounter | None:
    """The backend's exact counter (local: its own tokenizer); None means the estimate (Bedrock)."""
    return provider_for(config).token_counter(config, ctx.settings, ctx.store)


def _log_to_mlflow(ctx: StageContext, prepared: PreparedDataset) -> None:
    version = prepared.dataset
    run_id = ctx.run_id
    assert run_id is not None
    inputs = [
        DatasetInput(
            dataset=Dataset(
                name=f"{version.name}-{split}",
                digest=version.version[:36],
                source_type="s3",
                source=json.dumps({"uri": uri}),
                profile=json.dumps({"num_rows": version.splits.get(split, 0)}),
            ),
            tags=[InputTag(key="mlflow.data.context", value=split)],
        )
        for split, uri in version.split_uris.items()
    ]
    ctx.mlflow.log_inputs(run_id, datasets=inputs)
    now = int(time.time() * 1000)
    counts = {
        "data.total": version.total,
        "data.accepted": version.accepted,
        "data.rejected": version.rejected,
        "data.duplicates": version.duplicates,
        "data.filtered": version.filtered,
        "data.tokens": version.tokens,
        **{f"data.split.{k}": v for k, v in version.splits.items()},
        **{f"data.pii.{k}": v for k, v in version.pii.items()},
        **{f"data.kind.{k}": v for k, v in prepared.summary.kinds.items()},
        "data.files_skipped": len(prepared.summary.files_skipped),
        "data.dropped_key_records": sum(prepared.summary.dropped_keys.values()),
    }
    ctx.mlflow.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()])
    ctx.mlflow.set_tag(run_id, "tuneline.dataset_version", version.version)
    ctx.mlflow.set_tag(run_id, "tuneline.dataset_uri", version.uri)
    ctx.mlflow.log_dict(run_id, prepared.summary.to_json_dict(), "data/summary.json")
    ctx.mlflow.log_dict(run_id, version.model_dump(mode="json"), "data/dataset_version.json")
    ctx.mlflow.log_text(run_id, prepared.report_markdown, "data/report.md")
