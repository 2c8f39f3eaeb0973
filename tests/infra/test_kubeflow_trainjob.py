"""infra/kubernetes/trainjob.yaml: a Kubeflow Trainer TrainJob (trainer.kubeflow.org/v1alpha1) for a
multi-node local tune job, checked offline against trainjob.schema.json (written from the
published TrainJob CRD's fields); its command is the worker's own command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tuneline.backends.local.worker import argument_parser
from tuneline.settings import Settings

KUBERNETES = Path(__file__).resolve().parents[2] / "infra" / "kubernetes"


@pytest.fixture
def manifest() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "trainjob.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((KUBERNETES / "trainjob.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_manifest_is_a_valid_trainjob(manifest: dict[str, Any], validator: jsonschema.Draft7Validator) -> None:
    assert list(validator.iter_errors(manifest)) == []
    assert (manifest["apiVersion"], manifest["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert manifest["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = manifest["spec"]["trainer"]
    assert trainer["numNodes"] >= 2  # the point of this manifest: more than one machine
    gpus = trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"]
    assert trainer["numProcPerNode"] == gpus  # one process per GPU of each node


def _edit(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    edited = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = edited
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return edited


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.trainer.numNode", 2, "Additional properties are not allowed ('numNode' was unexpected)"),
        ("spec.trainer.numProcPerNode", "auto", "'auto' is not of type 'integer'"),
        ("spec.trainer.numNodes", 0, "0 is less than the minimum of 1"),
        ("spec.runtimeRef", None, "'runtimeRef' is a required property"),
        ("metadata.name", "Tuneline_Tune", "does not match"),
        ("apiVersion", "kubeflow.org/v1", "'trainer.kubeflow.org/v1alpha1' was expected"),
        ("spec.trainer.resourcesPerNode.limits", {"nvidia.com/gpu": "eight"}, "is not valid under any of the given schemas"),
    ],
    ids=["typo", "proc-string", "no-nodes", "no-runtime", "bad-name", "old-api", "bad-quantity"],
)
def test_the_schema_refuses_what_the_api_server_would(
    manifest: dict[str, Any], validator: jsonschema.Draft7Validator, path: str, value: Any, message: str
) -> None:
    errors = [e.message for e in validator.iter_errors(_edit(manifest, path, value))]
    assert any(message in e for e in errors), errors


def test_every_rank_runs_the_worker_with_a_command_line_it_accepts(manifest: dict[str, Any]) -> None:
    trainer = manifest["spec"]["trainer"]
    assert trainer["command"] == ["torchrun"]  # the rendezvous comes from the runtime's PET_* variables
    args = trainer["args"]
    assert args[:2] == ["-m", "tuneline.backends.local.worker"]
    assert not any(a.startswith(("--standalone", "--nproc", "--nnodes")) for a in args)
    parsed = argument_parser().parse_args(args[2:])
    assert parsed.spec == "SPEC_URI" and parsed.resume == "auto" and parsed.publish_status
    assert parsed.job_dir is None  # <TUNELINE_HOME>/jobs/<identity> on each node


def test_the_environment_names_tuneline_settings(manifest: dict[str, Any]) -> None:
    names = {e["name"] for e in manifest["spec"]["trainer"]["env"]}
    settings = {f"TUNELINE_{name.upper()}" for name in Settings.model_fields}
    assert {n for n in names if n.startswith("TUNELINE_")} <= settings
    assert "TUNELINE_S3_BUCKET" in names
    for env in manifest["spec"]["trainer"]["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == "tuneline-env"  # the Secret the work pool loads (README.md, step 2)
