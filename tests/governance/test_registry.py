"""The MLflow registry wrapper against a real MLflow server."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from tuneline.errors import PromotionError
from tuneline.governance.registry import CHAMPION, PREVIOUS, ModelRegistry
from tuneline.settings import Settings

pytestmark = [pytest.mark.service]


@pytest.fixture
def client(stack_settings: Settings) -> MlflowClient:
    from tuneline.storage.tracking import configure_mlflow

    return configure_mlflow(stack_settings)  # with the stack's credentials: MLflow runs with auth


@pytest.fixture
def registry(client: MlflowClient) -> ModelRegistry:
    return ModelRegistry(client)


@pytest.fixture
def model_name() -> str:
    return f"reg-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def register(registry: ModelRegistry, model_name: str) -> Callable[[str], str]:
    """Register a version for a fresh job id; returns its version number."""

    def make(job_id: str | None = None) -> str:
        job = job_id or uuid.uuid4().hex[:12]
        return str(registry.register(model_name, f"s3://bucket/models/{job}", job, {"k": "v"}).version)

    return make


def test_no_model_means_no_champion(registry: ModelRegistry, model_name: str) -> None:
    assert registry.champion(model_name) is None


def test_register_is_once_per_job_identity(registry: ModelRegistry, register, model_name: str) -> None:
    first = register("job-a")
    again = register("job-a")
    other = register("job-b")
    assert first == again != other
    assert registry.client.get_model_version(model_name, first).tags["tuneline.job_id"] == "job-a"


def test_promote_moves_champion_and_keeps_previous(registry: ModelRegistry, register, model_name: str) -> None:
    v1, v2 = register(), register()
    assert registry.promote(model_name, v1, expected_champion=None) is None
    assert registry.promote(model_name, v2, expected_champion=v1) == v1
    assert str(registry.champion(model_name).version) == v2
    assert str(registry.alias_version(model_name, PREVIOUS).version) == v1


def test_promote_refuses_when_the_champion_changed(registry: ModelRegistry, register, model_name: str) -> None:
    v1, v2, v3 = register(), register(), register()
    registry.promote(model_name, v1, expected_champion=None)
    registry.promote(model_name, v2, expected_champion=v1)
    with pytest.raises(PromotionError, match="changed since evaluation"):
        registry.promote(model_name, v3, expected_champion=v1)
    assert str(registry.champion(model_name).version) == v2


def test_restore_puts_both_aliases_back(registry: ModelRegistry, register, model_name: str) -> None:
    v1, v2 = register(), register()
    registry.promote(model_name, v1, expected_champion=None)
    registry.promote(model_name, v2, expected_champion=v1)
    registry.restore(model_name, champion=v1, previous=None)
    assert str(registry.champion(model_name).version) == v1
    assert registry.alias_version(model_name, PREVIOUS) is None


def test_rollback_goes_to_previous_and_can_be_undone(registry: ModelRegistry, register, model_name: str) -> None:
    v1, v2 = register(), register()
    registry.promote(model_name, v1, expected_champion=None)
    registry.promote(model_name, v2, expected_champion=v1)
    assert registry.rollback(model_name) == (v2, v1)
    assert str(registry.champion(model_name).version) == v1
    assert registry.rollback(model_name) == (v1, v2)


def test_rollback_without_previous_or_to_a_missing_version_is_refused(
    registry: ModelRegistry, register, model_name: str
) -> None:
    v1 = register()
    registry.promote(model_name, v1, expected_champion=None)
    with pytest.raises(PromotionError, match="no 'previous' version"):
        registry.rollback(model_name)
    with pytest.raises(PromotionError, match="has no version 99"):
        registry.rollback(model_name, "99")


def test_deleting_the_champion_version_leaves_no_champion(
    registry: ModelRegistry, register, model_name: str
) -> None:
    v1 = register()
    registry.set_alias(model_name, CHAMPION, v1)
    registry.client.delete_model_version(model_name, v1)
    # MLflow drops a version's aliases with it: evaluation then falls back to the base model.
    assert registry.champion(model_name) is None


def test_alias_naming_a_missing_version_is_a_clear_error() -> None:
    """A registry whose alias names a version that cannot be read (edited by hand, or a store
    that keeps dangling aliases) must be reported, not taken for "no champion"."""
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    class DanglingAliasClient:
        def get_model_version_by_alias(self, name: str, alias: str):
            raise MlflowException("version 3 not found", error_code=RESOURCE_DOES_NOT_EXIST)

        def get_registered_model(self, name: str):
            return SimpleNamespace(aliases={CHAMPION: "3"})

    with pytest.raises(PromotionError, match="points to version 3, which no longer exists"):
        ModelRegistry(DanglingAliasClient()).champion("m")  # type: ignore[arg-type]
