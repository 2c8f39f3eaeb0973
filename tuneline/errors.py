"""Tuneline's exception hierarchy.

Every error a user can act on derives from :class:`TunelineError`; the CLI turns these into a
one-line message and a non-zero exit status instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "DataError",
    "EvaluationError",
    "JobFailedError",
    "NotFoundError",
    "PromotionError",
    "ServiceUnavailableError",
    "StackError",
    "TunelineError",
    "ValidationFailedError",
]


class TunelineError(Exception):
    """Base class of every error Tuneline raises on purpose."""


class ConfigError(TunelineError):
    """A run config or setting is missing, malformed or out of range."""


class DataError(TunelineError):
    """The input data as a whole is unusable (no readable records, too few for the target...)."""


class NotFoundError(TunelineError):
    """A thing a person named (model, version, flow run, suite) does not exist; says "no such ..."."""


class StackError(TunelineError):
    """A local stack service could not be started, stopped or reached."""


class ServiceUnavailableError(TunelineError):
    """A remote service (S3, MLflow, Prefect, Bedrock) did not answer; names the service."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service} is unavailable: {detail}")
        self.service = service


class BackendError(TunelineError):
    """A tuning backend rejected a job spec or could not run it."""


class ValidationFailedError(BackendError):
    """A job spec broke the backend's or base model's limits; one message per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid job spec:\n" + "\n".join(f"- {p}" for p in problems))
        self.problems = problems


class JobFailedError(BackendError):
    """A tuning job ended in a failed or stopped state; carries the backend's own message."""


class EvaluationError(TunelineError):
    """Evaluation could not run (missing model, unknown champion version...)."""


class PromotionError(TunelineError):
    """Promotion was refused or could not complete; the registry is left as it was."""
