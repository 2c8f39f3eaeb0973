"""The whole lifecycle on the bundled example, through real SeaweedFS, MLflow and a Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.tracking import artifact_key
from tuneline.config import RunConfig, load_run_config
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_tickets"

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.e2e]


def example_config(
    path: Path, example_dir: Path, name: str, data: str = "tickets.jsonl", base_model: str | None = None
) -> RunConfig:
    """The example config with its data (file ``data``) and base model moved to the test's
    temporary copies; ``base_model`` replaces the base (e.g. a registered ``models:/`` version)."""
    config = load_run_config(path)
    suites = [
        s.model_copy(update={"source": str(example_dir / "data" / Path(s.source).name)}) if s.source else s
        for s in config.evaluation.suites
    ]
    return config.model_copy(
        update={
            "name": name,
            "data": config.data.model_copy(update={"source": str(example_dir / "data" / data)}),
            "tune": config.tune.model_copy(update={"base_model": base_model or str(example_dir / "tiny-base")}),
            "evaluation": config.evaluation.model_copy(update={"suites": suites}),
        }
    )


def mlflow_json(client: MlflowClient, run_id: str, path: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, path, tmp)).read_text())


def prefect_artifacts(model_name: str) -> dict:
    """The latest artifact of each kind for this model, by kind (``training-progress``...)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    prefix = artifact_key(model_name, "")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
    latest: dict = {}
    for artifact in sorted(found, key=lambda a: a.created):
        if artifact.key and artifact.key.startswith(prefix + "-"):
            latest[artifact.key.removeprefix(prefix + "-")] = artifact
    return latest


def prefect_run_name(flow_run_id: str | None) -> str:
    from uuid import UUID

    from prefect import get_client

    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).name


# Two whole lifecycles of 500 training steps each; in make test they share 2 cores with the fault
# suite's runs (seen here: 10:45 for one run's training alone), past the default 900 s.
@pytest.mark.timeout(1800)
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
    # the lifecycle run carries the gate's deltas only; each model's values are on its evaluation run
    eval_metrics = {k for k in run.data.metrics if k.startswith("eval/")}
    assert eval_metrics and all("/delta/" in k for k in eval_metrics), sorted(eval_metrics)
    assert len(run.inputs.dataset_inputs) >= 3
    history = client.get_metric_history(first.mlflow_run_id, "train_loss")
    assert len(history) > 1
    champion = client.get_model_version_by_alias(config.name, "champion")
    assert str(champion.version) == first.version.version
    assert champion.tags["tuneline.dataset_version"] == first.dataset.version

    # live training views: system metrics and the checkpoints (step, validation loss) on the MLflow run
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    listed = client.list_artifacts(first.mlflow_run_id, "checkpoints")
    assert [a.path for a in listed] == ["checkpoints/checkpoints.json"]
    checkpoints = mlflow_json(client, first.mlflow_run_id, "checkpoints/checkpoints.json")["checkpoints"]
    assert checkpoints and all(c["uri"].startswith("s3://") and "/checkpoints/step-" in c["uri"] for c in checkpoints)
    assert checkpoints[-1]["step"] == first.model.steps
    assert checkpoints[-1]["validation_loss"] is not None

    # Prefect: artifacts keyed per model, the run named after the model, a roll-up on the parent
    artifacts = prefect_artifacts(config.name)
    assert {"training-progress", "checkpoints", "training-summary", "evaluation-report", "lifecycle"} <= set(artifacts)
    progress = artifacts["training-progress"]
    assert progress.data == 100.0
    assert f"step {first.model.steps}/" in progress.description and "tokens/s" in progress.description
    table = artifacts["checkpoints"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [row["step"] for row in table] == [c["step"] for c in checkpoints]
    rollup = artifacts["lifecycle"].data
    assert rollup.startswith(f"# {config.name}: promoted to champion")
    assert first.mlflow_run_url in rollup and "| data |" in rollup and "## Evaluation" in rollup
    assert prefect_run_name(first.flow_run_id).startswith(f"{config.name}-")

    # a worse config is evaluated against the champion and not promoted; the alias stays
    worse = example_config(EXAMPLE / "worse.yaml", example_dir, "tickets-e2e")
    second = customize_model(worse)
    assert not second.decision.approved
    assert not second.version.promoted
    assert "champion" in second.metrics["task/exact_match"]
    champion_after = client.get_model_version_by_alias(config.name, "champion")
    assert str(champion_after.version) == first.version.version


# One short SFT lifecycle, then a DPO and a GRPO lifecycle that each start from the champion (~115 s alone).
@pytest.mark.timeout(1800)
def test_dpo_and_grpo_lifecycles_start_from_the_champion_and_are_gated_against_it(
    lifecycle_settings: Settings, example_dir: Path
) -> None:
    from flows.lifecycle import customize_model

    name = "tickets-methods"
    sft = example_config(EXAMPLE / "run.yaml", example_dir, name)
    # Short runs: what is tested is the wiring (base from the registry, kinds, gating), not quality.
    sft = sft.model_copy(update={"tune": sft.tune.model_copy(update={"max_steps": 150}),
                                 "approval": sft.approval.model_copy(update={"checks": []})})
    assert customize_model(sft).version.promoted
    client = MlflowClient(lifecycle_settings.mlflow_tracking_uri)
    for method, config_file, data, signal, steps in (
        ("dpo", "dpo.yaml", "preferences.jsonl", "rewards/margins", 20),
        ("grpo", "grpo.yaml", "rft.jsonl", "reward", 10),
    ):
        champion = client.get_model_version_by_alias(name, "champion")
        config = example_config(EXAMPLE / config_file, example_dir, name, data=data,
                                base_model=f"models:/{name}@champion")
        config = config.model_copy(update={"tune": config.tune.model_copy(update={"max_steps": steps})})
        summary = customize_model(config)
        run = client.get_run(summary.mlflow_run_id)
        # trained from the champion's weights, recorded as the version it was on when the run began
        assert run.data.tags["tuneline.base_model_version"] == f"models:/{name}/{champion.version}"
        assert summary.model.base_model == champion.tags["tuneline.model_uri"]
        assert run.data.params["tune.method"] == method
        assert len(client.get_metric_history(summary.mlflow_run_id, signal)) > 1, method
        # the data was read as its kind, and every record is in one count
        assert summary.dataset.accepted > 0 and summary.dataset.rejected == 0
        # evaluated against the champion it started from, and gated: promoted only when approved
        assert "champion" in summary.metrics["general/json_field_accuracy"], method
        assert summary.decision.reasons, method
        now = client.get_model_version_by_alias(name, "champion")
        expected = summary.version.version if summary.decision.approved else str(champion.version)
        assert str(now.version) == expected, (method, summary.decision.reasons)
