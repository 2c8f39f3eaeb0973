"""infra/kubernetes/work-pool-gpu.json: a base job template Prefect accepts, rendering a GPU job.

Checked with Prefect's own code: the server's template validation (what `prefect work-pool create
--base-job-template` runs) and the worker's rendering of a job configuration from the template and
a deployment's job variables. prefect-kubernetes is not installed here; the structural rules its
worker enforces on the manifest are restated below.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prefect.server.schemas.actions import WorkPoolCreate, validate_base_job_template
from prefect.utilities.templating import find_placeholders
from prefect.workers.base import BaseJobConfiguration

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "kubernetes" / "work-pool-gpu.json"


class _KubernetesJobConfiguration(BaseJobConfiguration):
    """The fields of prefect-kubernetes' KubernetesWorkerJobConfiguration."""

    namespace: str = "default"
    job_manifest: dict[str, Any]
    cluster_config: dict[str, Any] | None = None
    job_watch_timeout_seconds: int | None = None
    pod_watch_timeout_seconds: int = 60
    stream_output: bool = True


class _NoApi:
    """Stands in for the Prefect client: the template must render without the API (no block or
    variable references), and the test must not start a temporary server."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"rendering the template called the Prefect API ({name})")


# What prefect-kubernetes' worker requires of every job manifest (_get_base_job_manifest).
_REQUIRED_POD_SPEC = {"parallelism": 1, "completions": 1, "restartPolicy": "Never"}


@pytest.fixture
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text(encoding="utf-8"))


def _render(template: dict[str, Any], job_variables: dict[str, Any]) -> _KubernetesJobConfiguration:
    return asyncio.run(
        _KubernetesJobConfiguration.from_template_and_values(template, job_variables, client=_NoApi())
    )


def _container(config: _KubernetesJobConfiguration) -> dict[str, Any]:
    return config.job_manifest["spec"]["template"]["spec"]["containers"][0]


def test_prefect_accepts_the_template_for_a_kubernetes_pool(template) -> None:
    pool = WorkPoolCreate(name="tuneline-k8s", type="kubernetes", base_job_template=template)
    assert set(pool.base_job_template) == {"job_configuration", "variables"}
    assert "job_manifest" in template["job_configuration"]


def test_every_placeholder_is_a_declared_variable(template) -> None:
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    declared = set(template["variables"]["properties"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert {"gpu_count", "node_selector", "tolerations", "secret_name", "image"} <= used


def test_prefect_rejects_the_template_when_a_variable_is_undeclared(template) -> None:
    broken = copy.deepcopy(template)
    del broken["variables"]["properties"]["gpu_count"]
    with pytest.raises(ValueError, match="gpu_count"):
        validate_base_job_template(broken)


def test_variables_are_a_json_schema_whose_defaults_are_valid(template) -> None:
    schema = template["variables"]
    jsonschema.Draft7Validator.check_schema(schema)
    for name, prop in schema["properties"].items():
        if "default" in prop:
            sub = {**prop, "definitions": schema.get("definitions", {})}
            jsonschema.validate(prop["default"], sub)
        assert prop.get("title") or prop.get("description"), f"{name}: the UI form needs a title"


def test_defaults_render_a_one_gpu_job_on_tolerated_gpu_nodes(template) -> None:
    config = _render(template, {})
    manifest = config.job_manifest
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    pod = manifest["spec"]["template"]["spec"]
    assert {k: pod[k] for k in _REQUIRED_POD_SPEC} == _REQUIRED_POD_SPEC
    container = _container(config)
    assert container["name"] == "prefect-job"
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["envFrom"] == [{"secretRef": {"name": "tuneline-env"}}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert config.namespace == manifest["metadata"]["namespace"] == "tuneline"
    assert manifest["spec"]["backoffLimit"] == 0


def test_job_variables_of_a_deployment_override_the_defaults(template) -> None:
    config = _render(
        template,
        {
            "gpu_count": 0,
            "node_selector": {"eks.amazonaws.com/nodegroup": "cpu"},
            "tolerations": [],
            "secret_name": "tuneline-prod",
            "image": "registry.example.com/tuneline@sha256:" + "0" * 64,
            "env": {"TUNELINE_S3_BUCKET": "prod-bucket"},
        },
    )
    pod = config.job_manifest["spec"]["template"]["spec"]
    container = _container(config)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 0
    assert pod["nodeSelector"] == {"eks.amazonaws.com/nodegroup": "cpu"}
    assert pod["tolerations"] == []
    assert container["envFrom"] == [{"secretRef": {"name": "tuneline-prod"}}]
    assert container["image"].endswith("0" * 64)
    assert config.env == {"TUNELINE_S3_BUCKET": "prod-bucket"}


def test_a_multi_gpu_deployment_gives_the_pod_every_gpu_for_torchrun(template) -> None:
    # tune.distributed {processes: auto} then runs one torchrun process per GPU the pod was given.
    config = _render(template, {"gpu_count": 4, "shm_size": "8Gi"})
    resources = _container(config)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 4
    volumes = {v["name"]: v for v in config.job_manifest["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}  # NCCL's shared memory
    assert "processes: auto" in template["variables"]["properties"]["gpu_count"]["description"]
