"""A registered version as the base model: read once as the weights it holds, refused where it
holds none (no such version, a Bedrock model), and compared as those weights by the retraining check."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import RunConfig
from tuneline.errors import ConfigError
from tuneline.governance.registry import ModelRegistry
from tuneline.settings import Settings
from tuneline.stages.context import StageContext, start_lifecycle_run
from tuneline.stages.retraining import CONFIG_HASH_TAG, DATASET_VERSION_TAG, check_retraining
from tuneline.stages.tune import resolve_base_model
from tuneline.tags import BACKEND_TAG, BASE_MODEL_TAG, BASE_MODEL_VERSION_TAG, MODEL_URI_TAG

pytestmark = pytest.mark.service


def _config(name: str, base_model: str) -> RunConfig:
    return RunConfig.model_validate({
        "name": name, "data": {"source": "data/preferences.jsonl"},
        "tune": {"backend": "local", "base_model": base_model, "method": "dpo"},
    })


def test_a_registered_base_is_the_weights_of_the_version_the_alias_names(stack_settings: Settings) -> None:
    ctx = StageContext(stack_settings)
    name = f"base-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(ctx.mlflow)
    ctx.mlflow.create_registered_model(name)
    for n, backend in ((1, "local"), (2, "bedrock")):
        ctx.mlflow.create_model_version(name, f"s3://tuneline/runs/{name}/{n}/", tags={
            BACKEND_TAG: backend, MODEL_URI_TAG: f"s3://tuneline/runs/{name}/job-{n}/model/"})
    registry.set_alias(name, "champion", "1")

    config = _config(name, f"models:/{name}@champion")
    start_lifecycle_run(ctx, config)
    resolved = resolve_base_model(ctx, config)
    assert resolved.tune.base_model == f"s3://tuneline/runs/{name}/job-1/model/"
    assert resolved.tune.method == "dpo" and config.tune.base_model == f"models:/{name}@champion"
    assert ctx.mlflow.get_run(ctx.run_id).data.tags[BASE_MODEL_VERSION_TAG] == f"models:/{name}/1"
    assert resolve_base_model(ctx, _config(name, f"models:/{name}/1")).tune.base_model == resolved.tune.base_model
    plain = _config(name, "/models/tiny-base")
    assert resolve_base_model(ctx, plain) is plain

    with pytest.raises(ConfigError, match="holds no local weights"):
        resolve_base_model(ctx, _config(name, f"models:/{name}/2"))
    with pytest.raises(ConfigError, match="no such version"):
        resolve_base_model(ctx, _config(name, f"models:/{name}@nobody"))


def test_retraining_compares_a_registered_base_as_the_weights_it_names(stack_settings: Settings, tmp_path: Path) -> None:
    """A champion tuned from ``models:/<name>/1`` was built from that version's weights: a rerun
    starting from the same version, data and config has nothing to do; from another, it retrains
    and says which weights changed."""
    ctx = StageContext(stack_settings)
    ctx.store.ensure_bucket()
    name = f"rebase-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(ctx.mlflow)
    ctx.mlflow.create_registered_model(name)
    # Prepare counts tokens with the base's tokenizer, so each version holds a real (tiny) model.
    model = build_tiny_model(tmp_path / "model")
    weights = {n: ctx.store.uri(f"runs/{name}/job-{n}/model/") for n in (1, 2)}
    for n in (1, 2):
        ctx.store.put_dir(weights[n], model)
        ctx.mlflow.create_model_version(name, weights[n], tags={BACKEND_TAG: "local", MODEL_URI_TAG: weights[n]})
    registry.set_alias(name, "champion", "2")
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(
        f'{{"messages": [{{"role": "user", "content": "ticket {i}"}}, {{"role": "assistant", "content": "answer {i}"}}]}}\n'
        for i in range(30)
    ))

    def config(base: str) -> RunConfig:
        return RunConfig.model_validate({
            "name": name, "data": {"source": str(source)}, "tune": {"backend": "local", "base_model": base},
        })

    pinned = config(f"models:/{name}/1")
    first = check_retraining(ctx, pinned)
    assert first.decision.retrain  # the champion has no lineage tags yet
    for key, value in {
        DATASET_VERSION_TAG: first.dataset.version,
        BASE_MODEL_TAG: weights[1],  # what the lifecycle records: the resolved weights
        CONFIG_HASH_TAG: resolve_base_model(ctx, pinned).config_hash(),
    }.items():
        ctx.mlflow.set_model_version_tag(name, "2", key, value)

    again = check_retraining(ctx, pinned)
    assert not again.decision.retrain, again.decision.reasons
    from_champion = check_retraining(ctx, config(f"models:/{name}@champion")).decision
    assert from_champion.retrain
    assert any(weights[1] in r and weights[2] in r for r in from_champion.reasons), from_champion.reasons
