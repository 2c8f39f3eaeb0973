"""Session-wide fixtures that run REAL services (SeaweedFS, MLflow) with the product's own stack code.

Each service runs in its own temporary home on free ports, so tests never clash with a
``make run`` stack on the default ports, nor with another test session. Services stop at the end
of the session.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import SecretStr

# Set before anything imports Prefect: no analytics, no network.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

from tuneline import stack  # noqa: E402
from tuneline.settings import Settings  # noqa: E402
from tuneline.stack.ports import free_stack_ports  # noqa: E402
from tuneline.storage.s3 import ObjectStore  # noqa: E402


def isolated_settings(**overrides: object) -> Settings:
    """Settings built from ``overrides`` only: no TUNELINE_* variables, no .env or stack.env file."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("TUNELINE_")}
    try:
        return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    finally:
        os.environ.update(saved)


def stack_settings_on_free_ports(home: Path, **overrides: object) -> Settings:
    """Isolated settings for a local stack in ``home`` with every service on a free port.

    No credentials unless given: ``stack.up`` then generates them into ``<home>/stack.env``.
    """
    values: dict[str, object] = {
        "home": home,
        "s3_bucket": f"tuneline-test-{uuid.uuid4().hex[:8]}",
        **free_stack_ports(),
    }
    values.update(overrides)
    return isolated_settings(**values)


@pytest.fixture
def make_stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Factory: ``make_stack_settings(**overrides)`` -> isolated Settings in a fresh home on free ports.

    Starts nothing; a test that calls ``stack.up`` with them must call ``stack.down`` too.
    """

    def make(**overrides: object) -> Settings:
        home = overrides.pop("home", None) or tmp_path_factory.mktemp("stack")
        return stack_settings_on_free_ports(Path(str(home)), **overrides)

    return make


@pytest.fixture(scope="session")
def s3_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running SeaweedFS (S3 only) with random credentials and its own bucket, and
    every credential the stack generates (MLflow's admin password included).

    Its MLflow/Prefect ports are reserved but nothing listens there unless ``stack_settings``
    (MLflow) is used too.
    """
    settings = stack_settings_on_free_ports(
        tmp_path_factory.mktemp("s3-stack"),
        aws_access_key_id=SecretStr("TLTEST" + secrets.token_hex(7).upper()),
        aws_secret_access_key=SecretStr(secrets.token_hex(20)),
    )
    # What `stack up` generates (the audit writer's key, the Prefect auth string, the MLflow admin
    # password), in the settings the tests use: the stack is authenticated as by default.
    settings = stack.with_stack_credentials(settings, create=True)
    try:
        stack.up(settings, services=("s3",))
        yield settings
    finally:
        stack.down(settings, services=("s3",))


@pytest.fixture(scope="session")
def stack_settings(s3_settings: Settings) -> Iterator[Settings]:
    """Settings of a running SeaweedFS + MLflow server (artifacts proxied to that SeaweedFS)."""
    settings = s3_settings
    try:
        stack.up(settings, services=("mlflow",))
        yield settings
    finally:
        stack.down(settings, services=("mlflow",))


@pytest.fixture(scope="session")
def object_store(s3_settings: Settings) -> ObjectStore:
    return ObjectStore(s3_settings)


@pytest.fixture
def s3_prefix(s3_settings: Settings) -> Callable[[str], str]:
    """Factory of unique ``s3://<test bucket>/<name>-<random>`` prefixes, so tests never share keys."""

    def make(name: str = "t") -> str:
        return f"s3://{s3_settings.s3_bucket}/{name}-{uuid.uuid4().hex[:10]}"

    return make


# --- the AWS API contract: botocore's Stubber ---------------------------------------------------
class SleepRecorder:
    """Stands in for ``time.sleep`` in poll and back-off loops: records each wait and waits for none."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        assert seconds > 0, "a loop asked to sleep for nothing: that is a busy loop"
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def stubbed_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Any, Stubber]]]:
    """Factory: a boto3 client for a service, answered by botocore's ``Stubber``.

    The Stubber validates every request against the real service model, so these tests hold the
    code to AWS's API contract. Credentials are fake, so nothing can reach AWS; each stubber must have
    used every queued response by the end of the test.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with ExitStack() as stubs:
        stubbers: list[Stubber] = []

        def make(service: str, region: str = "us-west-2") -> tuple[Any, Stubber]:
            client = boto3.client(service, region_name=region)  # type: ignore[call-overload]
            stubbers.append(stubs.enter_context(Stubber(client)))
            return client, stubbers[-1]

        yield make
        for stubber in stubbers:
            stubber.assert_no_pending_responses()


# --- factories of lineage records, for stage and flow tests -----------------------------------
from datetime import UTC, datetime  # noqa: E402

from tuneline.config import MetricCheck, RunConfig, Target  # noqa: E402
from tuneline.lineage import (  # noqa: E402
    CheckResult,
    DatasetVersion,
    Decision,
    EvaluationReport,
    MetricComparison,
    PolicyResult,
    TrainedModel,
)


@pytest.fixture
def run_config() -> Callable[..., RunConfig]:
    def make(name: str | None = None) -> RunConfig:
        return RunConfig(
            name=name or f"stage-{uuid.uuid4().hex[:8]}",
            data={"source": "tickets.jsonl"},
            tune={"backend": "local", "base_model": "models/tiny", "adapter": "full"},
            approval={"checks": [MetricCheck(suite="task", metric="exact_match", min_value=0.5)]},
            promotion={"intended_use": "Tests.", "limitations": "None known."},
        )

    return make


@pytest.fixture
def lineage() -> Callable[..., tuple[DatasetVersion, TrainedModel, EvaluationReport, Decision]]:
    def make(approved: bool = True, champion: str | None = None, job_id: str | None = None):
        dataset = DatasetVersion(
            name="tickets",
            version="v" + uuid.uuid4().hex[:12],
            uri="s3://b/datasets/tickets/v1/",
            target=Target.LOCAL,
            total=10,
            accepted=8,
            rejected=1,
            duplicates=1,
            splits={"train": 6, "validation": 1, "test": 1},
            split_uris={s: f"s3://b/datasets/tickets/v1/{s}.jsonl" for s in ("train", "validation", "test")},
            tokens=1234,
            errors={"invalid_json": 1},
            pii={"email": 2},
        )
        job = job_id or uuid.uuid4().hex[:20]
        model = TrainedModel(
            backend="local",
            job_id=job,
            base_model="models/tiny",
            model_uri=f"s3://b/runs/x/{job}/model/",
            final_train_loss=0.3,
            final_validation_loss=0.4,
            steps=100,
        )
        comparison = MetricComparison(
            suite="task",
            metric="exact_match",
            values={"candidate": 0.8, "base": 0.1},
            baseline="base",
            delta=0.7,
            ci_low=0.6,
            ci_high=0.8,
            n=50,
        )
        report = EvaluationReport(
            candidate_uri=model.model_uri,
            champion_version=champion,
            comparisons=[comparison],
            results_uri="s3://b/evals/r.parquet",
        )
        check = CheckResult(
            suite="task",
            metric="exact_match",
            check="min_value",
            value=0.8,
            threshold=0.5,
            passed=approved,
            detail="candidate 0.8 vs required 0.5",
        )
        decision = Decision(
            approved=approved,
            decided_by="policy",
            decided_at=datetime.now(UTC),
            reasons=["all 1 policy checks passed"],
            policy=PolicyResult(passed=approved, needs_human=False, checks=[check]),
        )
        return dataset, model, report, decision

    return make
