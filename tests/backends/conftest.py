"""Fixtures for the local backend: a tiny model built here, the example's data, job specs in S3."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from examples.support_tickets.generate import generate_dataset, ticket_corpus
from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.backends.local.data import read_chat_jsonl
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import LocalTuneConfig, Target
from tuneline.lineage import DatasetVersion
from tuneline.records import ChatRecord
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

# Smaller than the example's model: these tests check mechanics, not what the model learns.
TEST_MODEL_SIZE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


@pytest.fixture(scope="session")
def ticket_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = generate_dataset(tmp_path_factory.mktemp("tickets") / "tickets.jsonl", n=120, seed=7)
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def ticket_records(ticket_lines: list[str]) -> list[ChatRecord]:
    return read_chat_jsonl("\n".join(ticket_lines), "tickets")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", ticket_corpus(), **TEST_MODEL_SIZE)


@pytest.fixture
def make_settings(s3_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Settings]:
    """Factory: the test S3 with a fresh Tuneline home each call (a 'new machine')."""

    def make() -> Settings:
        return s3_settings.model_copy(update={"home": tmp_path_factory.mktemp("home")})

    return make


@pytest.fixture
def make_spec(
    object_store: ObjectStore, s3_prefix: Callable[[str], str], ticket_lines: list[str], tiny_model_dir: Path
) -> Callable[..., JobSpec]:
    """Factory: a job spec over the tickets (96 train, 24 validation) uploaded to a fresh prefix.

    ``output_uri`` is fresh on every call unless given; keyword arguments override tune fields.
    """
    object_store.ensure_bucket()

    def make(output_uri: str | None = None, version: str = "v-test", **tune: object) -> JobSpec:
        prefix = s3_prefix("data")
        splits = {"train": ticket_lines[:96], "validation": ticket_lines[96:]}
        uris = {
            name: object_store.put_bytes(f"{prefix}/{name}.jsonl", ("\n".join(lines) + "\n").encode())
            for name, lines in splits.items()
        }
        fields: dict[str, object] = {
            "base_model": str(tiny_model_dir),
            "adapter": "full",
            "learning_rate": 3e-3,
            "batch_size": 4,
            "max_seq_length": 128,
            "max_steps": 12,
            "eval_every_steps": 4,
            "checkpoint_every_steps": 4,
            "warmup_ratio": 0.1,
        }
        fields.update(tune)
        dataset = DatasetVersion(
            name="tickets",
            version=version,
            uri=prefix + "/",
            target=Target.LOCAL,
            total=120,
            accepted=120,
            rejected=0,
            duplicates=0,
            splits={k: len(v) for k, v in splits.items()},
            split_uris=uris,
            tokens=0,
        )
        return JobSpec(
            name="tickets",
            dataset=dataset,
            tune=LocalTuneConfig.model_validate(fields),
            output_uri=output_uri or s3_prefix("runs") + "/",
        )

    return make


class RecordingSink:
    """A MetricsSink that keeps everything it is given, and can fail at a chosen step (a crash)."""

    def __init__(self, crash_at_step: int | None = None) -> None:
        self.crash_at_step = crash_at_step
        self.points: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if step == self.crash_at_step:
            raise RuntimeError(f"simulated crash at step {step}")
        self.points.append((step, dict(metrics)))

    def values(self, name: str) -> list[float]:
        return [m[name] for _, m in self.points if name in m]


@pytest.fixture
def recording_sink() -> type[RecordingSink]:
    return RecordingSink


def dump(records: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(r) for r in records)


@pytest.fixture
def offline_backend(tmp_path: Path) -> LocalBackend:
    """A local backend whose ``validate()`` reads a local base model only: the store is never contacted."""
    settings = Settings(
        _env_file=None, home=tmp_path, s3_bucket="tuneline-test", s3_endpoint_url="http://127.0.0.1:1"
    )  # type: ignore[call-arg]
    return LocalBackend(settings, ObjectStore(settings))


@pytest.fixture
def offline_spec(tiny_model_dir: Path) -> Callable[..., JobSpec]:
    """Factory: a job spec over the tiny model whose data is never read (for ``validate()`` refusals)."""

    def make(**tune: object) -> JobSpec:
        dataset = DatasetVersion(
            name="tickets", version="v-offline", uri="s3://tuneline-test/data/", target=Target.LOCAL, total=1,
            accepted=1, rejected=0, duplicates=0, splits={"train": 1},
            split_uris={"train": "s3://tuneline-test/data/train.jsonl"}, tokens=0,
        )
        config = LocalTuneConfig.model_validate({"base_model": str(tiny_model_dir), **tune})
        return JobSpec(name="tickets", dataset=dataset, tune=config, output_uri="s3://tuneline-test/runs/")

    return make
