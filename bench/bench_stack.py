"""Local stack startup times and MLflow metric logging: one call per metric vs batched.

Starts SeaweedFS, MLflow and Prefect with ``tuneline.stack`` in a temporary home on free ports
(beside any running stack), logs N metrics both ways against the real MLflow server, stops
everything, and prints one JSON line:

    .venv/bin/python bench/bench_stack.py [--metrics 200] [--no-prefect]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tuneline import stack
from tuneline.settings import Settings
from tuneline.stack.ports import free_stack_ports
from tuneline.storage.tracking import BatchedMetricsLogger, configure_mlflow, get_or_create_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=200)
    parser.add_argument("--no-prefect", action="store_true")
    args = parser.parse_args()
    services = ("s3", "mlflow") if args.no_prefect else stack.SERVICE_NAMES

    with tempfile.TemporaryDirectory(prefix="tuneline-bench-") as home:
        settings = Settings(_env_file=None, home=Path(home), **free_stack_ports())  # type: ignore[call-arg]
        result: dict[str, object] = {"bench": "stack", "metrics": args.metrics}
        try:
            for status in stack.up(settings, services=services):
                result[f"{status.name}_startup_s"] = round(status.startup_s or 0.0, 2)

            client = configure_mlflow(settings)
            experiment_id = get_or_create_experiment("bench-metrics", client)

            single_run = client.create_run(experiment_id).info.run_id
            start = time.perf_counter()
            for step in range(args.metrics):
                client.log_metric(single_run, "loss", 1.0 / (step + 1), step=step)
            result["single_calls_s"] = round(time.perf_counter() - start, 3)

            batched_run = client.create_run(experiment_id).info.run_id
            start = time.perf_counter()
            with BatchedMetricsLogger(client, batched_run) as sink:
                for step in range(args.metrics):
                    sink.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
                result["batched_log_calls_s"] = round(time.perf_counter() - start, 4)
            result["batched_total_s"] = round(time.perf_counter() - start, 3)
            result["batched_http_calls"] = sink.batches_sent
            landed = len(client.get_metric_history(batched_run, "loss"))
            if landed != args.metrics:
                raise SystemExit(f"only {landed} of {args.metrics} batched metrics landed")
        finally:
            start = time.perf_counter()
            stack.down(settings)
            result["down_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
