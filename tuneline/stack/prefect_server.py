"""The Prefect server (API, UI and background services), started as ``prefect server start``.

Only the command line is used here: the core library never imports Prefect.

Unless the stack is insecure, the server runs with ``PREFECT_SERVER_API_AUTH_STRING`` (generated
into stack.env on the first ``up``): every API call but ``/api/health`` needs it as HTTP basic
auth, clients send it from ``PREFECT_API_AUTH_STRING`` and the UI asks for it on its login page.
"""

from __future__ import annotations

import sys

from tuneline.errors import StackError
from tuneline.settings import Settings
from tuneline.stack._service import http_ok, http_status, service_dir

__all__ = ["PrefectServer"]


class PrefectServer:
    name = "prefect"
    # ~16 s seen here on a quiet machine; database migrations make the first start longer.
    startup_timeout_s = 180.0

    def url(self, settings: Settings) -> str:
        return settings.prefect_ui_url

    def command(self, settings: Settings) -> list[str]:
        return [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.prefect_port),
            "--analytics-off",
        ]

    def environment(self, settings: Settings) -> dict[str, str]:
        env = {
            "PREFECT_HOME": str(service_dir(settings, "prefect")),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            # Without these the UI on a port other than 4200 looks for the API on 4200.
            "PREFECT_UI_API_URL": settings.prefect_api_url,
            "PREFECT_SERVER_UI_API_URL": settings.prefect_api_url,
            # The server process must not try to reach itself through a client profile.
            "PREFECT_API_URL": settings.prefect_api_url,
            # Concurrency-slot leases (the lifecycle and promotion locks) on disk under PREFECT_HOME,
            # not in the server's memory: a restarted server still knows who holds a slot, so a run
            # that rode out the outage can renew its lease instead of getting 410 Gone.
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
        }
        if settings.stack_insecure:
            # An auth string inherited from the caller's environment would turn auth on anyway.
            env.update({"PREFECT_SERVER_API_AUTH_STRING": "", "PREFECT_API_AUTH_STRING": ""})
            return env
        auth_string = _auth_string(settings)
        if auth_string is None:
            raise StackError("prefect: auth is on but no auth string was generated (prefect_api_auth_string)")
        # The server's own background services call its API with the client setting.
        env.update({"PREFECT_SERVER_API_AUTH_STRING": auth_string, "PREFECT_API_AUTH_STRING": auth_string})
        return env

    def prepare(self, settings: Settings) -> None:
        service_dir(settings, "prefect")

    def is_healthy(self, settings: Settings) -> bool:
        return http_ok(f"{settings.prefect_api_url}/health")

    def after_start(self, settings: Settings) -> None:
        return None

    def check(self, settings: Settings) -> str | None:
        probe = f"{settings.prefect_api_url}/admin/version"
        anonymous = http_status(probe, timeout_s=30)
        if anonymous is None:
            return None  # not answering: ``is_healthy`` already says so
        if settings.stack_insecure:
            return None
        if anonymous == 200:
            return (
                f"the server on port {settings.prefect_port} answers without credentials: it was started "
                "insecure; run `tuneline stack down` then `tuneline stack up`"
            )
        auth_string = _auth_string(settings)
        if auth_string is None:
            return "the server requires credentials: set TUNELINE_PREFECT_API_AUTH_STRING (see stack.env)"
        user, _, password = auth_string.partition(":")
        code = http_status(probe, (user, password), timeout_s=30)
        if code != 200:
            return (
                f"the server refused TUNELINE_PREFECT_API_AUTH_STRING (HTTP {code}): it must be the one in "
                "stack.env that the server was started with"
            )
        return None


def _auth_string(settings: Settings) -> str | None:
    secret = settings.prefect_api_auth_string
    return secret.get_secret_value() if secret is not None and secret.get_secret_value() else None
