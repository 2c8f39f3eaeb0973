"""Stage 1, prepare: validate, clean, split and version the data; record it in MLflow."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric

from tuneline.config import RunConfig, Target
from tuneline.data.prepare import PreparedDataset, prepare
from tuneline.data.tokens import HFTokenCounter, TokenCounter
from tuneline.lineage import DatasetVersion
from tuneline.stages.context import StageContext

__all__ = ["PrepareOutcome", "run_prepare"]


@dataclass(frozen=True)
class PrepareOutcome:
    dataset: DatasetVersion
    report_markdown: str


def run_prepare(ctx: StageContext, config: RunConfig) -> PrepareOutcome:
    target: Target = config.target
    prepared: PreparedDataset = prepare(
        config.data,
        target=target,
        name=config.dataset_name,
        store=ctx.store,
        token_counter=_token_counter(ctx, config),
    )
    if ctx.run_id:
        _log_to_mlflow(ctx, prepared)
    return PrepareOutcome(prepared.version, prepared.report_markdown)


def _token_counter(ctx: StageContext, config: RunConfig) -> TokenCounter | None:
    """The local backend's own tokenizer counts tokens exactly; Bedrock targets use the estimate."""
    if config.target is not Target.LOCAL:
        return None
    # transformers is heavy: imported only when the local target needs its tokenizer
    from tuneline.backends.hf_models import load_tokenizer, resolve_model_dir

    trust = bool(getattr(config.tune, "trust_remote_code", False))
    model_dir = resolve_model_dir(config.tune.base_model, ctx.store, ctx.settings.home / "cache" / "models")
    return HFTokenCounter(load_tokenizer(model_dir, trust), name=config.tune.base_model)


def _log_to_mlflow(ctx: StageContext, prepared: PreparedDataset) -> None:
    version = prepared.version
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
    }
    ctx.mlflow.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()])
    ctx.mlflow.set_tag(run_id, "tuneline.dataset_version", version.version)
    ctx.mlflow.set_tag(run_id, "tuneline.dataset_uri", version.uri)
    ctx.mlflow.log_dict(run_id, prepared.summary.model_dump(mode="json"), "data/summary.json")
    ctx.mlflow.log_dict(run_id, version.model_dump(mode="json"), "data/dataset_version.json")
    ctx.mlflow.log_text(run_id, prepared.report_markdown, "data/report.md")
