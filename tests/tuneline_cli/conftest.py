"""CLI test fixtures: the CLI changes process-wide state (environment, warning filters, log levels)
as a real `tuneline` process would; each test gets it back as it was."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from tuneline_cli.failures import _CHATTY_LOGGERS


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    env = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    os.environ.pop("TUNELINE_DEBUG", None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
