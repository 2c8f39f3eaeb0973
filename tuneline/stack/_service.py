"""What the stack needs to know about one service: its command, environment and health check."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from tuneline.settings import Settings

__all__ = ["Service", "http_ok", "http_status", "service_dir"]


class Service(Protocol):
    name: str
    startup_timeout_s: float

    def url(self, settings: Settings) -> str: ...

    def command(self, settings: Settings) -> list[str]: ...

    def environment(self, settings: Settings) -> dict[str, str]:
        """Variables added to the service's environment (on top of a minimal inherited one)."""
        ...

    def prepare(self, settings: Settings) -> None:
        """Create data folders/databases before the first start."""
        ...

    def is_healthy(self, settings: Settings) -> bool: ...

    def after_start(self, settings: Settings) -> None:
        """Work that needs the service up (e.g. creating the bucket)."""
        ...

    def check(self, settings: Settings) -> str | None:
        """What stops clients from using this healthy service (e.g. refused credentials); None if nothing."""
        ...


def http_status(url: str, basic_auth: tuple[str, str] | None = None, timeout_s: float = 5.0) -> int | None:
    """The HTTP status ``url`` answers a GET with (sending basic-auth credentials if given); None if unreachable."""
    try:
        request = urllib.request.Request(url)  # noqa: S310 - local URLs; ValueError if malformed
        if basic_auth is not None:
            token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - local URLs
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers a GET with a 2xx status."""
    status = http_status(url, timeout_s=timeout_s)
    return status is not None and 200 <= status < 300


def service_dir(settings: Settings, name: str) -> Path:
    path = settings.home.resolve() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
