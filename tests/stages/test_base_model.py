"""A registered version as the base model: read once as the weights it holds, refused where it
holds none (no such version, a Bedrock model)."""

from __future__ import annotations

import uuid

import pytest

from tuneline.config import RunConfig
from tuneline.errors import ConfigError
from tuneline.governance.registry import ModelRegistry
from tuneline.settings import Settings
from tuneline.stages.context import StageContext, start_lifecycle_run
from tuneline.stages.tune import resolve_base_model
from tuneline.tags import BACKEND_TAG, BASE_MODEL_VERSION_TAG, MODEL_URI_TAG

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
