"""The Prefect server (API, UI and background services), started as ``prefect server start``.

Only the command line is used here: the core library never imports Prefect.
"""

from __future__ import annotations

import sys

from tuneline.settings import Settings
from tuneline.stack._service import http_ok, service_dir

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
        return {
            "PREFECT_HOME": str(service_dir(settings, "prefect")),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            # Without these the UI on a port other than 4200 looks for the API on 4200.
            "PREFECT_UI_API_URL": settings.prefect_api_url,
            "PREFECT_SERVER_UI_API_URL": settings.prefect_api_url,
            # The server process must not try to reach itself through a client profile.
            "PREFECT_API_URL": settings.prefect_api_url,
        }

    def prepare(self, settings: Settings) -> None:
        service_dir(settings, "prefect")

    def is_healthy(self, settings: Settings) -> bool:
        return http_ok(f"{settings.prefect_api_url}/health")

    def after_start(self, settings: Settings) -> None:
        return None

    def check(self, settings: Settings) -> str | None:
        return None
