"""`tuneline generate`: try a model (a registered version, the champion, a candidate's weights)
on a prompt, or chat with it in a terminal, before deciding on it.

The model is answered by its backend's generator from the provider registry, so a local model
and a Bedrock custom model are tried the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuneline.backends.base import Generation, TextGenerator
from tuneline.backends.registry import provider
from tuneline.config import GenerationConfig, RunConfig
from tuneline.errors import ConfigError, NotFoundError
from tuneline.records import ChatRecord, Message
from tuneline.settings import Settings
from tuneline.tags import BACKEND_TAG, BASE_MODEL_TAG, MODEL_URI_TAG

__all__ = ["ModelToTry", "answer", "open_generator", "resolve_model"]

_REGISTERED = re.compile(r"^(?P<name>[^@/:\s]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")

# The generator answers a record's prompt; its final assistant turn is ignored (TextGenerator).
_TO_BE_ANSWERED = "(to be generated)"


@dataclass(frozen=True)
class ModelToTry:
    label: str
    """What the person named: ``support-tickets@champion (v3)``."""
    backend: str
    model_uri: str | None
    base_model: str


def resolve_model(reference: str, settings: Settings, config: RunConfig | None) -> ModelToTry:
    """``NAME@ALIAS`` or ``NAME/VERSION`` from the MLflow registry; otherwise a model directory,
    ``s3://`` prefix or Bedrock ARN, whose backend and base model come from ``config``."""
    match = _REGISTERED.match(reference)
    if match is None or (config is not None and reference.startswith(("s3://", "/", "."))):
        if config is None:
            raise ConfigError(
                f"{reference!r} is not NAME@ALIAS or NAME/VERSION of a registered model; to try weights "
                "directly, pass --config with the run config they were tuned with"
            )
        return ModelToTry(reference, config.tune.backend, reference, config.tune.base_model)
    from mlflow.exceptions import MlflowException

    from tuneline.stages.context import StageContext
    from tuneline.storage.tracking import unreachable_as_service_error

    name, alias, version = match["name"], match["alias"], match["version"]
    client = StageContext(settings).mlflow
    with unreachable_as_service_error():
        try:
            mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                raise
            what = f"alias {alias!r}" if alias else f"version {version}"
            raise NotFoundError(
                f"no such model {name!r} with {what} in the MLflow registry at {settings.mlflow_tracking_uri}"
            ) from None
    tags = mv.tags or {}
    if MODEL_URI_TAG not in tags:
        raise ConfigError(f"{name} v{mv.version} has no {MODEL_URI_TAG} tag: it was not registered by Tuneline")
    backend = tags.get(BACKEND_TAG) or (config.tune.backend if config else "local")
    base_model = tags.get(BASE_MODEL_TAG) or (config.tune.base_model if config else "")
    return ModelToTry(f"{reference} (v{mv.version})", backend, tags[MODEL_URI_TAG], base_model)


def open_generator(model: ModelToTry, settings: Settings, config: RunConfig | None) -> TextGenerator:
    from tuneline.storage.s3 import ObjectStore

    run_config = config or RunConfig(
        name="generate", data={"source": "unused"}, tune={"backend": model.backend, "base_model": model.base_model}
    )
    return provider(model.backend).generator(
        run_config, label=model.label, model_uri=model.model_uri, base_model=model.base_model,
        settings=settings, store=ObjectStore(settings),
    )


def answer(
    generator: TextGenerator, history: list[Message], system: str | None, generation: GenerationConfig
) -> Generation:
    """The model's next turn after ``history`` (which ends with the user's message)."""
    record = ChatRecord(system=system, messages=(*history, Message(role="assistant", content=_TO_BE_ANSWERED)))
    (generated,) = generator.generate([record], generation)
    return generated
