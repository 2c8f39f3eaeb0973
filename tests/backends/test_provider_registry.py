"""The provider registry: every backend name resolves to its provider, lazily, and a Bedrock run's
code path never imports torch (checked in a fresh interpreter, where nothing was imported before)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuneline.backends.base import TuningBackend
from tuneline.backends.provider import BackendProvider
from tuneline.backends.registry import PROVIDERS, provider, provider_for
from tuneline.config import RunConfig
from tuneline.errors import ConfigError
from tuneline.settings import Settings
from tuneline.stages.context import StageContext
from tuneline.stages.tune import job_id_for, job_spec, make_backend

ROOT = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::123456789012:role/bedrock-ft"


def _bedrock_config() -> RunConfig:
    return RunConfig(
        name="tickets",
        data={"source": "d.jsonl"},
        tune={"backend": "bedrock", "base_model": "amazon.nova-micro-v1:0:128k", "role_arn": ROLE},
    )


def _offline_settings() -> Settings:
    return Settings(_env_file=None, s3_bucket="tuneline-test", s3_endpoint_url="http://127.0.0.1:1")  # type: ignore[call-arg]


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_registered_name_resolves_to_a_provider_of_that_name(name: str) -> None:
    found = provider(name)
    assert isinstance(found, BackendProvider)
    assert found.name == name
    assert provider(name) is found  # resolved once


def test_an_unknown_backend_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no tuning backend named 'sagemaker'.*bedrock, local"):
        provider("sagemaker")


def test_stages_get_the_tuner_and_job_id_of_the_configs_backend(run_config, lineage) -> None:
    ctx = StageContext(_offline_settings())
    dataset = lineage()[0]
    local, bedrock = run_config(), _bedrock_config()
    assert provider_for(local).name == "local" and provider_for(bedrock).name == "bedrock"

    local_backend, bedrock_backend = make_backend(ctx, local), make_backend(ctx, bedrock)
    assert isinstance(local_backend, TuningBackend) and local_backend.name == "local"
    assert isinstance(bedrock_backend, TuningBackend) and bedrock_backend.name == "bedrock"

    # local: the job is its identity (the checkpoint prefix); Bedrock: a job name derived from it
    assert job_id_for(ctx, local, dataset) == job_spec(ctx, local, dataset).identity
    bedrock_id = job_id_for(ctx, bedrock, dataset)
    assert job_spec(ctx, bedrock, dataset).identity[:8] in bedrock_id and bedrock_id.startswith("tickets")
    assert provider("local").expected_steps(local.tune) is None
    assert provider("local").expected_steps(local.tune.model_copy(update={"max_steps": 7})) == 7
    assert provider("bedrock").expected_steps(bedrock.tune) is None


def _modules_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_a_bedrock_run_never_imports_torch() -> None:
    modules = _modules_after(
        f"""
        from tuneline.backends.registry import provider_for
        from tuneline.config import RunConfig
        from tuneline.settings import Settings
        from tuneline.stages import evaluate, prepare, tune
        from tuneline.stages.context import StageContext

        config = RunConfig.model_validate({_bedrock_config().model_dump(mode="json")!r})
        ctx = StageContext(Settings(_env_file=None, s3_bucket="b", s3_endpoint_url="http://127.0.0.1:1"))
        tune.make_backend(ctx, config)
        provider = provider_for(config)
        provider.generator(config, label="candidate", model_uri=None, base_model=config.tune.base_model,
                           settings=ctx.settings, store=ctx.store)
        assert provider.token_counter(config, ctx.settings, ctx.store) is None
        """
    )
    assert "tuneline.backends.bedrock" in modules  # the provider really was built
    assert not {"torch", "transformers", "peft", "trl"} & modules


def test_resolving_the_local_provider_imports_no_bedrock_code() -> None:
    modules = _modules_after("from tuneline.backends.registry import provider\nprovider('local')")
    assert "tuneline.backends.local" in modules
    assert not {m for m in modules if m.startswith("tuneline.backends.bedrock")}
    assert "torch" not in modules  # resolving is cheap; torch comes with the first training call
