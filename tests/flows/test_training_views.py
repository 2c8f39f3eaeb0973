"""What a person follows in Prefect and MLflow after training and at the end of a lifecycle run:
the checkpoints table (step, validation loss), the training summary, the parent's roll-up."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from flows.lifecycle import rollup_markdown
from tuneline.lineage import LifecycleSummary, ModelVersionRef
from tuneline.settings import Settings


def test_the_rollup_has_every_stage_with_links(lineage) -> None:
    dataset, model, report, decision = lineage(approved=False)
    summary = LifecycleSummary(
        model_name="tickets", flow_run_id="f", flow_run_url="http://prefect/runs/flow-run/f",
        mlflow_run_id="r", mlflow_run_url="http://mlflow/#/experiments/1/runs/r", dataset=dataset, model=model,
        decision=decision, version=ModelVersionRef(name="tickets", version="3", aliases=["challenger"]),
        model_version_url="http://mlflow/#/models/tickets/versions/3",
        metrics={"task/exact_match": {"base": 0.1, "candidate": 0.8}},
    )
    page = rollup_markdown(summary)
    assert page.startswith("# tickets: rejected, aliases unchanged")
    assert "(http://mlflow/#/experiments/1/runs/r)" in page and "(http://mlflow/#/models/tickets/versions/3)" in page
    for stage in ("| data |", "| training |", "| decision |", "| promotion |", "## Evaluation"):
        assert stage in page
    assert "| task/exact_match | 0.1000 | 0.8000 |" in page
    assert "8 accepted, 1 rejected, 1 duplicates of 10" in page


@pytest.mark.service
@pytest.mark.slow
def test_checkpoints_are_listed_in_prefect_and_mlflow(lifecycle_settings: Settings, run_config, lineage) -> None:
    from mlflow.entities import Metric
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.tracking import artifact_key
    from tasks.tune import publish_training_views
    from tuneline.stages.context import StageContext
    from tuneline.stages.progress import ProgressTracker
    from tuneline.stages.tune import job_spec
    from tuneline.storage.tracking import get_or_create_experiment

    config = run_config()
    dataset, model, _, _ = lineage()
    ctx = StageContext(lifecycle_settings)
    ctx.run_id = ctx.mlflow.create_run(get_or_create_experiment(config.name, ctx.mlflow)).info.run_id
    ctx.mlflow.log_batch(ctx.run_id, metrics=[Metric("validation_loss", v, 0, s) for s, v in ((50, 0.6), (100, 0.5))])
    output = job_spec(ctx, config, dataset).output_uri.rstrip("/")
    for step in (50, 100):
        ctx.store.put_bytes(f"{output}/checkpoints/step-{step}/weights.safetensors", b"w")
        ctx.store.put_bytes(f"{output}/checkpoints/step-{step}/manifest.json", b'{"step": %d}' % step)

    @flow(name="training-views-test")
    def publish() -> list:
        return publish_training_views(ctx, config, dataset, model, ProgressTracker(100))

    rows = publish()
    assert [(r.step, r.validation_loss) for r in rows] == [(50, 0.6), (100, 0.5)]
    with tempfile.TemporaryDirectory() as tmp:
        logged = json.loads(Path(ctx.mlflow.download_artifacts(ctx.run_id, "checkpoints/checkpoints.json", tmp)).read_text())
    assert [c["step"] for c in logged["checkpoints"]] == [50, 100]
    with get_client(sync_client=True) as client:
        found = {
            a.key: a
            for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=[artifact_key(config.name, "checkpoints"), artifact_key(config.name, "training-summary")])))
        }
    table = found[artifact_key(config.name, "checkpoints")].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [(r["step"], r["validation loss"]) for r in table] == [(50, 0.6), (100, 0.5)]
    assert f"{output}/checkpoints/step-100/" in [r["checkpoint"] for r in table]
    # each row links to its manifest through an http link a browser opens without credentials
    import urllib.request

    with urllib.request.urlopen(table[-1]["manifest (link)"], timeout=10) as response:  # noqa: S310 - our own stack
        assert json.loads(response.read()) == {"step": 100}
    summary = found[artifact_key(config.name, "training-summary")].data
    assert "2 checkpoint(s) kept" in summary and "[MLflow run](http" in summary


@pytest.mark.service
def test_object_links_open_in_a_browser_without_credentials(object_store, s3_prefix) -> None:
    import urllib.request

    from tasks.tracking import object_link

    uri = object_store.put_bytes(f"{s3_prefix('links')}/results.parquet", b"per-example rows")
    link = object_link(object_store, uri)
    assert link.startswith("http") and "Signature=" in link
    with urllib.request.urlopen(link, timeout=30) as response:  # noqa: S310 - the test's own S3
        assert response.read() == b"per-example rows"
    assert object_link(object_store, "s3://bucket/a/prefix/") == "s3://bucket/a/prefix/"


@pytest.mark.service
@pytest.mark.slow
def test_system_metrics_are_recorded_on_the_run_while_it_trains(stack_settings: Settings) -> None:
    import time

    from tasks.tune import SYSTEM_METRICS_EVERY_S, _system_metrics
    from tuneline.stages.context import StageContext
    from tuneline.storage.tracking import get_or_create_experiment

    ctx = StageContext(stack_settings)
    ctx.run_id = ctx.mlflow.create_run(get_or_create_experiment("system-metrics", ctx.mlflow)).info.run_id
    with _system_metrics(ctx):
        time.sleep(SYSTEM_METRICS_EVERY_S + 2)
    metrics = ctx.mlflow.get_run(ctx.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics, sorted(metrics)
