"""The retraining decision: tune only when the data, the base model or the config changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion
from tuneline.stages.retraining import (
    ChampionLineage,
    decide_retraining,
    retraining_markdown,
)


@pytest.fixture
def make_config() -> Callable[..., RunConfig]:
    def make(base_model: str = "models/tiny-base", learning_rate: float = 5e-3) -> RunConfig:
        return RunConfig.model_validate(
            {
                "name": "tickets",
                "data": {"source": "data/tickets.jsonl"},
                "tune": {"backend": "local", "base_model": base_model, "learning_rate": learning_rate},
            }
        )

    return make


@pytest.fixture
def make_dataset() -> Callable[..., DatasetVersion]:
    def make(version: str = "v-aaaa") -> DatasetVersion:
        return DatasetVersion(
            name="tickets",
            version=version,
            uri=f"s3://tuneline/datasets/tickets/{version}/",
            target="local",
            total=10,
            accepted=10,
            rejected=0,
            duplicates=0,
            splits={"train": 8, "validation": 1, "test": 1},
            split_uris={},
            tokens=100,
        )

    return make


def champion_of(config: RunConfig, dataset: DatasetVersion, **overrides: str | None) -> ChampionLineage:
    values: dict[str, str | None] = {
        "dataset_version": dataset.version,
        "base_model": config.tune.base_model,
        "config_hash": config.config_hash(),
    }
    values.update(overrides)
    return ChampionLineage(model_name=config.name, version="3", **values)


def test_same_data_base_model_and_config_means_nothing_to_do(make_config, make_dataset) -> None:
    config, dataset = make_config(), make_dataset()
    decision = decide_retraining(config, dataset, champion_of(config, dataset))
    assert not decision.retrain
    assert decision.champion_version == "3"
    assert "v-aaaa" in decision.reasons[0] and "models/tiny-base" in decision.reasons[0]
    assert "nothing to do" in retraining_markdown(decision)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"dataset": "v-bbbb"},
            ["dataset version changed: champion v3 has v-aaaa, this run has v-bbbb"],
            id="new-data",
        ),
        # the base model is part of the config, so its hash changes too
        pytest.param({"base_model": "models/other"}, ["base model changed", "run config changed"], id="new-base-model"),
        pytest.param({"learning_rate": 1e-3}, ["run config changed"], id="new-config"),
    ],
)
def test_a_change_since_the_champion_means_retrain(make_config, make_dataset, change, expected) -> None:
    champion = champion_of(make_config(), make_dataset())
    config = make_config(
        base_model=change.get("base_model", "models/tiny-base"), learning_rate=change.get("learning_rate", 5e-3)
    )
    decision = decide_retraining(config, make_dataset(change.get("dataset", "v-aaaa")), champion)
    assert decision.retrain
    assert [r[: len(e)] for r, e in zip(decision.reasons, expected, strict=True)] == expected


def test_no_champion_means_retrain(make_config, make_dataset) -> None:
    decision = decide_retraining(make_config(), make_dataset(), None)
    assert decision.retrain and decision.champion_version is None
    assert "no champion" in decision.reasons[0]
    assert retraining_markdown(decision).startswith("# tickets: retraining")


def test_a_champion_without_lineage_tags_counts_as_changed(make_config, make_dataset) -> None:
    config, dataset = make_config(), make_dataset()
    decision = decide_retraining(config, dataset, champion_of(config, dataset, config_hash=None))
    assert decision.retrain
    assert decision.reasons == ["champion v3 has no tuneline.config_hash tag, so its run config is unknown"]


def test_champion_lineage_reads_the_registry_tags() -> None:
    mv = ModelVersion(
        name="tickets",
        version=7,
        creation_timestamp=0,
        tags=[
            ModelVersionTag("tuneline.dataset_version", "v-aaaa"),
            ModelVersionTag("tuneline.base_model", "b"),
            ModelVersionTag("tuneline.config_hash", "h"),
        ],
    )
    lineage = ChampionLineage.from_model_version(mv)
    assert lineage == ChampionLineage(
        model_name="tickets", version="7", dataset_version="v-aaaa", base_model="b", config_hash="h"
    )
