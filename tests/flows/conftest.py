"""Fixtures for flow tests: a Prefect test server, and the real S3 + MLflow stack exported to the
environment the flows read their settings from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneline.settings import Settings


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # Startup took ~23 s here against a 30 s default; on a loaded 2-core CI machine it can take longer.
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def lifecycle_settings(stack_settings: Settings, prefect_server: None) -> Iterator[Settings]:
    # Exactly these settings: drop every other TUNELINE_* variable (a developer's .env included)
    env = stack_settings.as_env()
    saved = {k: v for k, v in os.environ.items() if k.startswith("TUNELINE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield stack_settings
    finally:
        for key in [k for k in os.environ if k.startswith("TUNELINE_")]:
            del os.environ[key]
        os.environ.update(saved)


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example's data and its tiny base model, built in a temporary folder."""
    from examples.support_tickets.base_model import build_example_base
    from examples.support_tickets.generate import generate_all

    root = tmp_path_factory.mktemp("example")
    generate_all(root / "data")
    build_example_base(root / "tiny-base")
    return root
