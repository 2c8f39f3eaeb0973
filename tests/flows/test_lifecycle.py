"""The whole lifecycle on the bundled example, through real SeaweedFS, MLflow and a Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tuneline.config import RunConfig, load_run_config
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_tickets"

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.e2e]


def example_config(path: Path, example_dir: Path, name: str) -> RunConfig:
    """The example config with its data and base model moved to the test's temporary copies."""
    config = load_run_config(path)
    suites = [
        s.model_copy(update={"source": str(example_dir / "data" / Path(s.source).name)}) if s.source else s
        for s in config.evaluation.suites
    ]
    return config.model_copy(
        update={
            "name": name,
            "data": config.data.model_copy(update={"source": str(example_dir / "data" / "tickets.jsonl")}),
            "tune": config.tune.model_copy(update={"base_model": str(example_dir / "tiny-base")}),
            "evaluation": config.evaluation.model_copy(update={"suites": suites}),
        }
    )


def test_lifecycle_promotes_a_better_model_and_keeps_it_over_a_worse_one(
    lifecycle_settings: Settings, example_dir: Path
) -> None:
    from flows.lifecycle import customize_model

    config = example_config(EXAMPLE / "run.yaml", example_dir, "tickets-e2e")
    first = customize_model(config)

    # promoted, with the task metrics better than the base
    assert first.decision.approved, first.decision.reasons
    assert first.version.promoted and "champion" in first.version.aliases
    task_em = first.metrics["task/exact_match"]
    assert task_em["candidate"] > task_em["base"]

    # S3 holds the dataset version, the model, the per-example results and the audit record
    store = ObjectStore(lifecycle_settings)
    keys = set(store.list_keys(first.dataset.uri))
    prefix = first.dataset.uri.removeprefix(f"s3://{lifecycle_settings.s3_bucket}/")
    assert {f"{prefix}train.jsonl", f"{prefix}validation.jsonl", f"{prefix}test.jsonl"} <= keys
    assert any(True for _ in store.list_keys(first.model.model_uri))
    assert any(True for _ in store.list_keys(store.uri(f"audit/{config.name}/")))

    # MLflow has the run's metrics, the dataset inputs and the champion alias
    client = MlflowClient(lifecycle_settings.mlflow_tracking_uri)
    run = client.get_run(first.mlflow_run_id)
    assert "tune.final_train_loss" in run.data.metrics
    assert any(k.startswith("eval/") for k in run.data.metrics)
    assert len(run.inputs.dataset_inputs) >= 3
    history = client.get_metric_history(first.mlflow_run_id, "train_loss")
    assert len(history) > 1
    champion = client.get_model_version_by_alias(config.name, "champion")
    assert str(champion.version) == first.version.version
    assert champion.tags["tuneline.dataset_version"] == first.dataset.version

    # a worse config is evaluated against the champion and not promoted; the alias stays
    worse = example_config(EXAMPLE / "worse.yaml", example_dir, "tickets-e2e")
    second = customize_model(worse)
    assert not second.decision.approved
    assert not second.version.promoted
    assert "champion" in second.metrics["task/exact_match"]
    champion_after = client.get_model_version_by_alias(config.name, "champion")
    assert str(champion_after.version) == first.version.version
