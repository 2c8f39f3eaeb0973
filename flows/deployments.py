"""prefect.yaml, assembled from the reviewed files in ``deployments/``.

Each ``deployments/<name>.yaml`` is one deployment in prefect.yaml's own schema, plus one key of
ours: ``run_config: configs/<model>.yaml`` becomes the deployment's ``config`` parameter, so that
the UI's run form opens filled in from the reviewed run config. Scheduled and event-triggered
deployments name their config by path (``config_path``) and read it at run time instead.

Rendering also validates every run config it touches, so a typo fails at ``make deploy``, not at
03:00 on the schedule. ``tuneline deployments render --check`` (and a test) keeps the committed
prefect.yaml in step with ``deployments/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuneline.config import load_run_config
from tuneline.errors import ConfigError

__all__ = ["WORK_POOL", "render_prefect_yaml"]

WORK_POOL = "tuneline-local"
_HEADER = """\
# GENERATED from deployments/*.yaml by `tuneline deployments render` (make deploy runs it).
# Edit the files in deployments/, not this one; tests/flows/test_deployments.py checks they agree.
#
# Flow runs start in the directory `prefect deploy` ran in (the build step records it): the
# repository here, /app in the image of infra/Dockerfile.
"""


def _project_steps() -> dict[str, Any]:
    return {
        "build": [
            {
                "prefect.deployments.steps.run_shell_script": {
                    "id": "project-dir",
                    "script": "pwd",
                    "stream_output": False,
                }
            }
        ],
        "push": None,
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ project-dir.stdout }}"}}],
    }


def _deployment(path: Path, root: Path) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "name" not in spec or "entrypoint" not in spec:
        raise ConfigError(f"{path} must be a mapping with at least `name` and `entrypoint`")
    parameters = dict(spec.get("parameters") or {})
    run_config = spec.pop("run_config", None)
    if run_config is not None:
        config = load_run_config(path.parent / run_config)
        # exclude_unset: exactly what the reviewed file says; the form shows every default anyway
        parameters["config"] = config.model_dump(mode="json", exclude_unset=True)
    for named in [parameters.get("config_path")] + [
        (t.get("parameters") or {}).get("config_path") for t in spec.get("triggers") or []
    ]:
        if named is not None:
            load_run_config(root / named)
    if parameters:
        spec["parameters"] = parameters
    spec.setdefault("tags", ["tuneline"])
    spec.setdefault("work_pool", {"name": WORK_POOL})
    return spec


def render_prefect_yaml(root: Path) -> str:
    """The text of ``<root>/prefect.yaml`` for the deployment files in ``<root>/deployments/``."""
    specs = [_deployment(p, root) for p in sorted((root / "deployments").glob("*.yaml"))]
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"deployment names must be unique in deployments/: {names}")
    document = {"name": "tuneline", "prefect-version": "3.8.8", **_project_steps(), "deployments": specs}
    return _HEADER + "\n" + yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
