"""listen_to_metrics: a live view of a run's training metrics, fed as the sink takes them."""

from __future__ import annotations

import pytest

from tuneline.settings import Settings
from tuneline.stages.context import StageContext
from tuneline.storage.tracking import BatchedMetricsLogger, get_or_create_experiment, listen_to_metrics

pytestmark = pytest.mark.service


def test_listeners_see_each_metric_of_their_run_and_a_failing_one_is_dropped(stack_settings: Settings) -> None:
    client = StageContext(stack_settings).mlflow
    experiment = get_or_create_experiment("listeners", client)
    run, other = (client.create_run(experiment).info.run_id for _ in range(2))
    seen: list[tuple[dict[str, float], int]] = []
    calls = {"broken": 0}

    def broken(metrics: object, step: int) -> None:
        calls["broken"] += 1
        raise RuntimeError("view crashed")

    with listen_to_metrics(run, lambda m, s: seen.append((dict(m), s))), listen_to_metrics(run, broken):
        with BatchedMetricsLogger(client, run) as sink, BatchedMetricsLogger(client, other) as other_sink:
            sink.log_metrics({"train_loss": 0.9}, step=1)
            other_sink.log_metrics({"train_loss": 5.0}, step=1)  # another run: not ours
            sink.log_metrics({"train_loss": 0.8, "tokens_per_second": 1000.0}, step=2)
    assert seen == [({"train_loss": 0.9}, 1), ({"train_loss": 0.8, "tokens_per_second": 1000.0}, 2)]
    assert calls["broken"] == 1  # dropped after it failed; training went on
    assert [m.value for m in client.get_metric_history(run, "train_loss")] == [0.9, 0.8]
