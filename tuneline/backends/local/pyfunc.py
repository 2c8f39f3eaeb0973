"""Log a local model to MLflow as a pyfunc model that loads and generates offline.

``mlflow.transformers.log_model`` on a PEFT model records a Hub reference for the base model and
needs the network to load it back. This pyfunc model instead carries the model directory (and,
for a LoRA adapter, the base model directory) as MLflow artifacts, and loads them with
:class:`~tuneline.backends.local.generation.LocalGenerator`: nothing is fetched at load time.

Input: a pandas DataFrame with a ``messages`` column (a list of ``{"role", "content"}`` dicts
ending with a user turn) and an optional ``system`` column, or a list of such dicts, or plain
prompt strings. Output: a list of generated strings. ``params`` may set ``max_new_tokens`` and
``temperature``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from tuneline.backends.local.hf_models import MODEL_MANIFEST
from tuneline.config import GenerationConfig
from tuneline.records import ChatRecord, Message

__all__ = ["LocalChatModel", "log_local_model"]

_PLACEHOLDER_ANSWER = Message(role="assistant", content="")


def _records(model_input: Any) -> list[ChatRecord]:
    if isinstance(model_input, pd.DataFrame):
        rows: list[Any] = model_input.to_dict(orient="records")
    elif isinstance(model_input, (str, dict)):
        rows = [model_input]
    else:
        rows = list(model_input)
    records = []
    for row in rows:
        if isinstance(row, str):
            records.append(ChatRecord(messages=(Message(role="user", content=row), _PLACEHOLDER_ANSWER)))
            continue
        messages = row["messages"]
        if isinstance(messages, str):
            messages = json.loads(messages)
        turns = tuple(Message(role=m["role"], content=m["content"]) for m in messages)
        system = row.get("system")
        records.append(ChatRecord(system=system if isinstance(system, str) else None, messages=(*turns, _PLACEHOLDER_ANSWER)))
    return records


class LocalChatModel(PythonModel):
    """Generates with the model directory in the ``model`` artifact (on the ``base`` artifact)."""

    def load_context(self, context: PythonModelContext) -> None:
        from tuneline.backends.local.generation import LocalGenerator

        base = context.artifacts.get("base")
        self._generator = LocalGenerator(context.artifacts["model"], base_model=base, label="pyfunc")

    # `model_input` is left unannotated on purpose: MLflow reads a type hint there as the model's
    # input schema, which the explicit signature given at logging time already states.
    def predict(self, context: PythonModelContext, model_input, params: dict[str, Any] | None = None) -> list[str]:  # noqa: ANN001
        params = params or {}
        config = GenerationConfig(
            max_new_tokens=int(params.get("max_new_tokens", 128)),
            temperature=float(params.get("temperature", 0.0)),
        )
        return [g.text for g in self._generator.generate(_records(model_input), config)]


def log_local_model(model_dir: str | Path, base_dir: str | Path | None = None, name: str = "model") -> Any:
    """Log ``model_dir`` (plus ``base_dir`` for an adapter) to the active MLflow run.

    Returns MLflow's ``ModelInfo``; ``mlflow.pyfunc.load_model(info.model_uri)`` loads it back.
    The adapter's base defaults to the ``base_model`` its Tuneline manifest records, when that is
    a local directory.
    """
    model_dir = Path(model_dir)
    artifacts = {"model": str(model_dir)}
    if (model_dir / "adapter_config.json").is_file():
        if base_dir is None:
            manifest = model_dir / MODEL_MANIFEST
            base_dir = json.loads(manifest.read_text(encoding="utf-8"))["base_model"] if manifest.is_file() else None
        if base_dir is None or not Path(base_dir).is_dir():
            raise FileNotFoundError(
                f"{model_dir} is a LoRA adapter: pass base_dir, the local base model directory to log with it"
            )
        artifacts["base"] = str(base_dir)
    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.string, "system", required=False), ColSpec(DataType.string, "messages")]),
        outputs=Schema([ColSpec(DataType.string)]),
        params=ParamSchema(
            [ParamSpec("max_new_tokens", DataType.long, 128), ParamSpec("temperature", DataType.double, 0.0)]
        ),
    )
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=LocalChatModel(),
        artifacts=artifacts,
        signature=signature,
        pip_requirements=["torch", "transformers", "peft", "safetensors", "tuneline"],
    )
