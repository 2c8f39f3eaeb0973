"""The pyfunc model logs to MLflow, loads back and generates with no network and no Hub."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tuneline.backends.local.generation import LocalGenerator
from tuneline.backends.local.pyfunc import log_local_model
from tuneline.config import GenerationConfig
from tuneline.records import ChatRecord

pytestmark = pytest.mark.slow


def test_logged_model_loads_and_generates_like_the_generator(
    tiny_model_dir: Path, tmp_path: Path, ticket_records: list[ChatRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # MLflow's tracking URI and active experiment are process-wide: the URI is put back after, and
    # the experiment goes to start_run rather than set_experiment (a leaked active experiment makes
    # every later start_run(run_id=...) in another experiment fail).
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        # An explicit artifact location: a SQLite store's default is ./mlruns in the working directory.
        experiment = mlflow.create_experiment("pyfunc-test", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = log_local_model(tiny_model_dir, name="candidate")
        loaded = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)

    records = ticket_records[:3]
    frame = pd.DataFrame(
        {
            "system": [r.system for r in records],
            "messages": [json.dumps([m.model_dump() for m in r.prompt_messages]) for r in records],
        }
    )
    predicted = loaded.predict(frame, params={"max_new_tokens": 10})
    expected = LocalGenerator(tiny_model_dir).generate(records, GenerationConfig(max_new_tokens=10))
    assert list(predicted) == [g.text for g in expected]
