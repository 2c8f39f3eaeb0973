"""Amazon Bedrock: model customization, the model table, runtime generation and judging, serving.

One package for everything Bedrock (issue 17):

| module | what |
| --- | --- |
| ``api`` | client construction and the one retry policy for every Bedrock call |
| ``models`` | the base-model table: customization types, limits, lifecycle |
| ``backend`` | ``BedrockBackend``: CreateModelCustomizationJob, polling, metrics files |
| ``runtime`` | ``BedrockGenerator`` and ``BedrockJudge`` over Converse |
| ``serving`` | provisioned throughput and on-demand deployments for promoted models |
| ``provider`` | ``PROVIDER``, the ``BackendProvider`` that ``tuneline.backends.registry`` names |

The public names of the modules are importable from here, lazily (PEP 562): ``tuneline.config``
imports the model table from this package, and importing the package must not import the backend,
which imports ``tuneline.config`` back.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ["BEDROCK_SERVICE", "BedrockCaller", "BedrockServiceError", "Sleep", "make_bedrock_client"], "api"
    ),
    **dict.fromkeys(["BedrockBackend", "bedrock_job_name", "client_request_token"], "backend"),
    **dict.fromkeys(
        [
            "BEDROCK_MODELS",
            "BedrockModelSpec",
            "HyperparameterLimit",
            "bedrock_model_spec",
            "hyperparameter_strings",
        ],
        "models",
    ),
    **dict.fromkeys(["BedrockGenerator", "BedrockJudge", "JudgeItem", "JudgeVerdict"], "runtime"),
    **dict.fromkeys(
        [
            "ServingEndpoint",
            "ServingKind",
            "delete_custom_model_deployment",
            "delete_provisioned_throughput",
            "ensure_custom_model_deployment",
            "ensure_provisioned_throughput",
            "ensure_serving",
            "serving_name",
        ],
        "serving",
    ),
    **dict.fromkeys(["PROVIDER", "BedrockProvider"], "provider"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
