"""Calling Amazon Bedrock: client construction and one retry policy for every Bedrock call.

Throttling and transient server errors are retried with bounded, jittered exponential back-off;
everything else (validation, access, not found) fails at once, because repeating it cannot help and
would only delay the message the user needs. botocore's own retries are switched off on the clients
made here so that the policy is in one place and visible to tests (botocore's ``Stubber`` bypasses
botocore's retry handler, so a policy living there could not be tested).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from tuneline.errors import BackendError, ServiceUnavailableError
from tuneline.settings import Settings

__all__ = [
    "BEDROCK_SERVICE",
    "BedrockCaller",
    "BedrockServiceError",
    "Sleep",
    "make_bedrock_client",
]

BEDROCK_SERVICE = "Amazon Bedrock"

Sleep = Callable[[float], None]

_log = logging.getLogger(__name__)

# Error codes AWS documents as retryable for Bedrock, plus the generic AWS throttling names.
_THROTTLING = frozenset({"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"})
_TRANSIENT = frozenset(
    {
        "InternalServerException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def make_bedrock_client(settings: Settings, service: str = "bedrock") -> Any:
    """A boto3 client for ``bedrock`` or ``bedrock-runtime`` in the configured region.

    Credentials come from the default AWS chain (profile, environment, instance role), not from the
    S3 settings, which point at the local SeaweedFS by default.
    """
    kwargs: dict[str, Any] = {
        "region_name": settings.bedrock_region,
        "config": Config(
            retries={"total_max_attempts": 1},
            connect_timeout=10,
            read_timeout=120,
            user_agent_extra="tuneline",
        ),
    }
    if settings.bedrock_endpoint_url:
        kwargs["endpoint_url"] = settings.bedrock_endpoint_url
    return boto3.client(service, **kwargs)


class BedrockServiceError(BackendError):
    """Bedrock refused a call for a reason retrying cannot fix; keeps AWS's code and message."""

    def __init__(self, operation: str, code: str, message: str, subject: str = "") -> None:
        where = f" for {subject}" if subject else ""
        super().__init__(f"{BEDROCK_SERVICE} {operation}{where} failed ({code}): {message}")
        self.operation = operation
        self.code = code
        self.aws_message = message


class BedrockCaller:
    """Calls one boto3 Bedrock client's operations with the retry policy above.

    Retries back off exponentially with jitter. On top of that the caller adapts its pace: after a
    throttling error every *new* call (from any thread sharing this caller) first waits a shared
    delay, which doubles on each throttle and halves on each success, so a pool of workers slows
    down together instead of hammering a throttled endpoint. ``sleep`` and ``rand`` are injectable
    so tests run instantly and deterministically.
    """

    def __init__(
        self,
        client: Any,
        *,
        sleep: Sleep = time.sleep,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.client = client
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rand = rand
        self._lock = threading.Lock()
        self._pace = 0.0

    @property
    def pace(self) -> float:
        """The delay every new call currently waits first (0 unless recently throttled)."""
        return self._pace

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): "equal jitter", never zero."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + self._rand() * ceiling / 2

    def __call__(self, operation: str, subject: str = "", **params: Any) -> dict[str, Any]:
        """Call ``operation`` (the boto3 method name, e.g. ``get_model_customization_job``)."""
        method = getattr(self.client, operation)
        pace = self._pace
        if pace > 0:
            self.sleep(pace / 2 + self._rand() * pace / 2)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = method(**params)
            except ClientError as exc:
                code = _error_code(exc)
                message = exc.response.get("Error", {}).get("Message", str(exc))
                if code in _THROTTLING:
                    self._slow_down()
                elif code not in _TRANSIENT and _http_status(exc) < 500:
                    raise BedrockServiceError(operation, code, message, subject) from exc
                detail = f"{operation} {code}: {message}"
            except (ConnectionError, ReadTimeoutError) as exc:
                detail = f"{operation}: {exc}"
            except BotoCoreError as exc:
                raise ServiceUnavailableError(BEDROCK_SERVICE, f"{operation}: {exc}") from exc
            else:
                self._speed_up()
                return response
            if attempt == self.max_attempts:
                raise ServiceUnavailableError(
                    BEDROCK_SERVICE, f"gave up after {attempt} attempts; last error: {detail}"
                )
            delay = self.backoff(attempt)
            _log.info("%s; retrying in %.1fs (attempt %d/%d)", detail, delay, attempt, self.max_attempts)
            self.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _slow_down(self) -> None:
        with self._lock:
            self._pace = min(self.max_delay, max(self.base_delay, self._pace * 2))

    def _speed_up(self) -> None:
        if self._pace:
            with self._lock:
                self._pace = 0.0 if self._pace < self.base_delay / 4 else self._pace / 2


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
