"""What a reviewer sees of an evaluation in Prefect: the report as a markdown artifact and the
comparison chart as an image artifact whose presigned link a browser opens."""

from __future__ import annotations

import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuneline.settings import Settings

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_the_comparison_chart_is_an_image_artifact_a_browser_opens(
    prefect_server: None, s3_settings: Settings, s3_prefix: Callable[[str], str], run_config, lineage
) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.evaluate import publish_evaluation_artifacts
    from tasks.tracking import artifact_key
    from tuneline.evaluation.report import plot_comparisons
    from tuneline.stages.evaluate import EvaluateOutcome, upload_chart
    from tuneline.storage.s3 import ObjectStore

    store = ObjectStore(s3_settings)
    config = run_config()
    *_, report, _ = lineage()
    results_uri = store.put_bytes(f"{s3_prefix('evals')}/run-1/results.parquet", b"rows")
    report = report.model_copy(update={"results_uri": results_uri})
    with tempfile.TemporaryDirectory() as tmp:
        chart = plot_comparisons(report.comparisons, Path(tmp) / "comparison.png")
        chart_uri = upload_chart(store, chart, results_uri)
    assert chart_uri == results_uri.removesuffix("results.parquet") + "comparison.png"
    outcome = EvaluateOutcome(
        report=report,
        report_markdown=f"# Evaluation\n\n- [Per-example results]({results_uri})\n",
        summary={},
        chart_uri=chart_uri,
    )

    @flow(name="evaluation-views-test")
    def publish() -> None:
        publish_evaluation_artifacts(store, config, outcome)

    publish()
    keys = [artifact_key(config.name, "evaluation-chart"), artifact_key(config.name, "evaluation-report")]
    with get_client(sync_client=True) as client:
        found: dict[str | None, Any] = {
            a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        }
    image = found[keys[0]]
    assert image.type == "image"
    assert "valid for 7 days" in image.description and chart_uri in image.description
    url = image.data
    assert url.startswith("http") and "Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the test's own S3
        assert response.headers["Content-Type"] == "image/png"
        assert response.read().startswith(b"\x89PNG\r\n\x1a\n")
    # the markdown report's link to the per-example results opens in a browser too
    markdown = found[keys[1]].data
    assert results_uri not in markdown and "[Per-example results](http" in markdown
