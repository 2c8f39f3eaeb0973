"""The tune task's view of the backend's log lines: in the task run's log once, not twice."""

from __future__ import annotations

import logging

import pytest

from tasks.tune import _backend_log_lines


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.tracebacks: list[object] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.tracebacks.append(record.exc_info)


@pytest.fixture
def root_console() -> _Lines:
    """Stands where Prefect's console handler stands: on the root logger."""
    handler = _Lines()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_a_backend_line_reaches_the_run_log_once_and_the_console_not_twice(root_console: _Lines) -> None:
    run_logger = logging.getLogger("test.task-run")  # a real logger in the run logger's place
    run_lines = _Lines()
    run_logger.addHandler(run_lines)
    run_logger.propagate = False
    run_logger.setLevel(logging.INFO)  # as Prefect sets its run loggers
    backend = logging.getLogger("tuneline.backends.local.callbacks")
    source = logging.getLogger("tuneline.backends")
    before = (source.level, source.propagate)
    try:
        with _backend_log_lines(run_logger):
            backend.info("checkpoint step-%d saved to %s", 100, "s3://bucket/step-100/")
        assert run_lines.lines == ["checkpoint step-100 saved to s3://bucket/step-100/"]
        assert root_console.lines == []  # only through the run logger (which prints it itself)
        assert (source.level, source.propagate) == before
        with _backend_log_lines(run_logger):
            try:
                raise OSError("upload failed")
            except OSError:
                backend.warning("could not mirror checkpoint step-4", exc_info=True)
        assert run_lines.lines[-1] == "could not mirror checkpoint step-4"
        assert isinstance(run_lines.tracebacks[-1][1], OSError)  # the traceback travels with it
        backend.warning("after the task: as before")
        assert root_console.lines == ["after the task: as before"]
    finally:
        run_logger.removeHandler(run_lines)
