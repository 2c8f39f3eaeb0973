"""How the command line fails: one line ``error: ...`` on stderr and an exit status, never a traceback.

Every command runs inside :class:`CleanErrorsGroup`, so a command reports a user error by
raising it (a :class:`~tuneline.errors.TunelineError`, a pydantic ``ValidationError``, an
``OSError`` about a path); it need not catch anything itself. ``tuneline --debug ...`` (or
``TUNELINE_DEBUG=1``) lets the exception through with its traceback, and keeps third-party
warnings, library logs and progress bars as the libraries print them.

Exit statuses: 0 success, 2 the invocation or its input is wrong (the user can fix it), 1 a
service or job failed, or Tuneline has a bug (the message says to re-run with ``--debug``).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from tuneline.errors import JobFailedError, ServiceUnavailableError, TunelineError

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "CleanErrorsGroup",
    "debug_enabled",
    "enable_debug",
    "one_line",
    "quiet_third_parties",
    "quiet_prefect_console",
    "user_message",
]

EXIT_USAGE = 2
EXIT_FAILED = 1

_DEBUG_ENV = "TUNELINE_DEBUG"

# Progress bars and chatty defaults of the libraries Tuneline drives; set before they are imported.
_QUIET_ENV = {
    "TQDM_DISABLE": "1",  # tqdm >= 4.66 reads TQDM_* overrides (MLflow's genai evaluate, datasets)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_CHATTY_LOGGERS = ("mlflow", "alembic", "urllib3", "botocore", "transformers", "datasets", "httpx", "git")


def debug_enabled() -> bool:
    return os.environ.get(_DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def enable_debug() -> None:
    os.environ[_DEBUG_ENV] = "1"


def quiet_third_parties() -> None:
    """Keep library warnings, info logs and progress bars out of a normal (non --debug) run."""
    if debug_enabled():
        return
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class _NoTracebacks(logging.Filter):
    """Prints a failed task's or flow's log line without the traceback attached to it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            exc = record.exc_info[1] if record.exc_info else None
            record.exc_info = None
            record.exc_text = None
            if exc is not None and str(exc) not in record.getMessage():
                record.msg = f"{record.getMessage()} {type(exc).__name__}: {one_line(str(exc))}"
                record.args = ()
        return True


def quiet_prefect_console() -> None:
    """Prefect prints each failed task's traceback on the console; keep them for ``--debug``.

    Only console handlers are filtered: the logs sent to the Prefect server keep the traceback,
    so the run's page in the UI still shows it. Call after Prefect is imported (it configures
    logging on import).
    """
    if debug_enabled():
        return
    seen: set[int] = set()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if id(handler) in seen or not isinstance(handler, logging.StreamHandler):
                continue
            seen.add(id(handler))
            if not any(isinstance(f, _NoTracebacks) for f in handler.filters):
                handler.addFilter(_NoTracebacks())


def one_line(text: str) -> str:
    lines = [line.strip().removeprefix("- ").strip() for line in text.strip().splitlines()]
    return "; ".join(line for line in lines if line).replace(":;", ":")


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "is-instance", "union"}


def _field_path(loc: tuple[Any, ...]) -> str:
    """``format.str-enum[RecordFormat]`` -> ``format``: drop pydantic's union-branch tags."""
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS or "-" in p))]
    return ".".join(parts)


def _validation_message(exc: ValidationError) -> str:
    """One clause per field: its path, what it should be, and the value given."""
    by_field: dict[str, list[dict[str, Any]]] = {}
    for error in exc.errors():
        by_field.setdefault(_field_path(error.get("loc", ())) or exc.title, []).append(error)
    problems = []
    for where, errors in by_field.items():
        expected = [e["ctx"]["expected"] for e in errors if "expected" in (e.get("ctx") or {})]
        if len(expected) == len(errors):
            what = "should be " + " or ".join(expected)
        else:
            what = " or ".join(dict.fromkeys(e["msg"] for e in errors))
        given = errors[0].get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
        problems.append(f"{where}: {what}{shown}")
    return "; ".join(problems)


def user_message(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, one-line message) for an error a person can act on; None for a bug."""
    if isinstance(exc, ServiceUnavailableError | JobFailedError):
        return EXIT_FAILED, one_line(str(exc))
    if isinstance(exc, TunelineError):
        return EXIT_USAGE, one_line(str(exc))
    if isinstance(exc, ValidationError):
        return EXIT_USAGE, _validation_message(exc)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        return EXIT_USAGE, one_line(str(exc))
    if _is_unreachable(exc):
        return EXIT_FAILED, (
            f"a service did not answer ({type(exc).__name__}: {one_line(str(exc))}); "
            "check `tuneline stack status` and the TUNELINE_* endpoints"
        )
    return None


def _is_unreachable(exc: BaseException) -> bool:
    """Connection failures of the HTTP clients under Prefect, MLflow and boto3, matched without importing them."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    name, module = type(exc).__name__, type(exc).__module__
    return module.split(".")[0] in {"httpx", "httpcore", "requests", "urllib3", "botocore"} and (
        "Connect" in name or "Timeout" in name
    )


class CleanErrorsGroup(TyperGroup):
    """The root command: turns any exception a command raises into ``error: ...`` and an exit status."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            # a value that does not parse (a run id that is no UUID...): one line, as for every user error
            if debug_enabled():
                raise
            command = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            typer.secho(f"error: {one_line(exc.format_message())} (see `{command} --help`)", err=True, fg=typer.colors.RED)
            raise typer.Exit(EXIT_USAGE) from None
        # typer's own exits and other usage errors (exit 2 with the usage line) pass through as typer prints them
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become messages
            if debug_enabled():
                raise
            known = user_message(exc)
            if known is None:
                code = EXIT_FAILED
                message = (
                    f"{type(exc).__name__}: {one_line(str(exc)) or 'no message'} "
                    "(a Tuneline bug or an unexpected failure; run `tuneline --debug ...` for the traceback)"
                )
            else:
                code, message = known
            typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code) from None
