"""Serving a promoted Bedrock custom model: moved to :mod:`tuneline.backends.bedrock.serving`.

This name stays for the promote stage, which reaches Bedrock code only through governance and
the backend registry (import-linter: stages never import ``tuneline.backends.bedrock`` directly).
"""

from tuneline.backends.bedrock.api import make_bedrock_client
from tuneline.backends.bedrock.serving import (
    ServingEndpoint,
    ServingKind,
    delete_custom_model_deployment,
    delete_provisioned_throughput,
    ensure_custom_model_deployment,
    ensure_provisioned_throughput,
    ensure_serving,
    serving_name,
)

__all__ = [
    "ServingEndpoint",
    "ServingKind",
    "delete_custom_model_deployment",
    "delete_provisioned_throughput",
    "ensure_custom_model_deployment",
    "ensure_provisioned_throughput",
    "ensure_serving",
    "make_bedrock_client",
    "serving_name",
]
