"""Loading Hugging Face causal-LM directories for training and generation, offline.

A model source is a local directory or an ``s3://`` prefix, which is mirrored into a local cache
first (keyed by the prefix, refreshed only when missing). Weights load from safetensors only
(``use_safetensors=True``: pickled ``.bin`` weights can run code on load), and remote code runs
only when the config says ``trust_remote_code``. The hub is never contacted
(``local_files_only=True``).

Chat rendering uses the tokenizer's own chat template. A tokenizer without one gets
:data:`DEFAULT_CHAT_TEMPLATE`::

    ### System:
    {system}

    ### User:
    {user}

    ### Assistant:
    {assistant}{eos_token}

with turns separated by a blank line. The end-of-sequence token closes each assistant turn, so a
model trained with it learns to stop there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tuneline.errors import BackendError, ConfigError
from tuneline.records import ChatRecord, Message, ToolSpec
from tuneline.storage.s3 import ObjectStore, local_path_or_none

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "MODEL_MANIFEST",
    "Placement",
    "chat_messages",
    "chat_tools",
    "gpu_path_missing",
    "load_causal_lm",
    "model_config",
    "peft_calls",
    "read_model_manifest",
    "load_tokenizer",
    "resolve_model_dir",
    "select_placement",
]

_log = logging.getLogger(__name__)

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{{ '### ' + message['role'] | capitalize + ':\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ('\\n\\n' if messages else '') + '### Assistant:\\n' }}{% endif %}"
)

MODEL_MANIFEST = "tuneline_model.json"
"""Written into every model directory Tuneline exports: method, base model, job id."""


def resolve_model_dir(source: str | Path, store: ObjectStore | None, cache_root: Path) -> Path:
    """A local directory holding the model at ``source`` (downloading an ``s3://`` prefix once)."""
    text = str(source)
    local = local_path_or_none(text)
    if local is not None:
        if not (local / "config.json").is_file() and not (local / "adapter_config.json").is_file():
            raise ConfigError(
                f"model directory {local} has no config.json (nor adapter_config.json): "
                "point base_model at a Hugging Face model directory"
            )
        return local
    if store is None:
        raise ConfigError(f"model {text} is in S3 but no object store was given to download it")
    target = cache_root / hashlib.sha256(text.rstrip("/").encode()).hexdigest()[:16]
    marker = target / ".download-complete"
    if not marker.is_file():
        _log.info("downloading model %s to %s", text, target)
        store.download_prefix(text.rstrip("/") + "/", target)
        if not (target / "config.json").is_file() and not (target / "adapter_config.json").is_file():
            raise ConfigError(f"{text} holds no config.json: is it a Hugging Face model prefix?")
        marker.write_text(text, encoding="utf-8")
    return target


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The directory's tokenizer, with a chat template and a pad token guaranteed."""
    tokenizer = AutoTokenizer.from_pretrained(
        model_dir, local_files_only=True, trust_remote_code=trust_remote_code
    )
    if not getattr(tokenizer, "is_fast", False):
        raise BackendError(
            f"the tokenizer in {model_dir} is not a fast tokenizer; Tuneline needs tokenizer.json "
            "(character offsets are how it finds the assistant's tokens)"
        )
    if tokenizer.eos_token is None:
        raise BackendError(f"the tokenizer in {model_dir} has no eos_token; set one in tokenizer_config.json")
    if not tokenizer.chat_template:
        _log.info(
            "%s has no chat template; using Tuneline's default (see hf_models.DEFAULT_CHAT_TEMPLATE)",
            model_dir,
        )
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class Placement:
    """Where and in what precision a model runs."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain fp32
    weights_dtype: torch.dtype
    quantize_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes)


def gpu_path_missing(module: str, extra: str = "gpu") -> list[str]:
    """What this machine lacks for a GPU path needing ``module`` (installed by ``extra``), each with
    what to do about it (empty: nothing)."""
    missing = []
    if importlib.util.find_spec(module) is None:
        missing.append(f"{module} is not installed (install the '{extra}' extra: pip install 'tuneline[{extra}]')")
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is available (run on a GPU machine)")
    return missing


def select_placement(device: str = "auto", precision: str = "auto", adapter: str = "full") -> Placement:
    """CUDA when present (or asked), else CPU; bf16 autocast where the GPU supports it.

    Full fine-tuning keeps fp32 master weights under autocast; LoRA keeps the frozen base in the
    compute dtype (half the memory) while PEFT keeps the adapter itself in fp32. QLoRA needs
    bitsandbytes and a CUDA GPU and is refused, never silently downgraded, without them.
    """
    if adapter == "qlora":
        missing = gpu_path_missing("bitsandbytes")
        if device == "cpu":
            missing.append("tune.device is 'cpu' (use 'auto' or 'cuda')")
        if missing:
            raise ConfigError(
                "tune.adapter 'qlora' cannot run here: " + "; ".join(missing) + ". Use adapter 'lora' "
                "on this machine"
            )
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("tune.device is 'cuda' but no CUDA device is available: use 'auto' or 'cpu'")
    dev = torch.device(
        "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    if precision == "auto":
        half = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
        if half is None and adapter == "qlora":
            half = torch.float16  # a 4-bit base computes in a half type; fp16 on pre-Ampere GPUs
    elif precision == "fp32":
        if adapter == "qlora":
            raise ConfigError(
                "tune.precision 'fp32' does not apply to adapter 'qlora': use 'auto', 'bf16' or 'fp16'"
            )
        half = None
    elif precision == "fp16":
        if dev.type != "cuda":
            raise ConfigError(
                "tune.precision 'fp16' needs a CUDA device: use 'bf16', 'fp32' or 'auto' on CPU"
            )
        half = torch.float16
    else:
        half = torch.bfloat16
    weights = half if (half is not None and adapter in ("lora", "qlora")) else torch.float32
    return Placement(device=dev, autocast_dtype=half, weights_dtype=weights, quantize_4bit=adapter == "qlora")


def load_causal_lm(
    model_dir: Path, placement: Placement, trust_remote_code: bool = False, attention: str = "auto"
) -> PreTrainedModel:
    """The directory's causal LM on ``placement.device``, from safetensors only; ``attention`` is its
    ``attn_implementation`` ('auto': transformers' choice).

    With ``placement.quantize_4bit`` the weights are quantized to 4-bit NF4 while loading
    (bitsandbytes, double quantization, computing in ``weights_dtype``) and prepared for training
    adapters on top (PEFT's ``prepare_model_for_kbit_training``: norms in fp32, input gradients on).
    """
    if not any(model_dir.glob("*.safetensors")):
        raise BackendError(
            f"{model_dir} has no .safetensors weights; Tuneline does not load pickled weights "
            "(convert them with `safetensors` first)"
        )
    chosen = {} if attention == "auto" else {"attn_implementation": attention}
    if placement.quantize_4bit:
        return _load_4bit(model_dir, placement, trust_remote_code, chosen)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=placement.weights_dtype,
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=trust_remote_code,
        **chosen,
    )
    return model.to(placement.device)


def _load_4bit(
    model_dir: Path, placement: Placement, trust_remote_code: bool, chosen: dict[str, str]
) -> PreTrainedModel:
    # Not exercised by the test suite: it needs bitsandbytes and a CUDA GPU (see docs/local-backend.md).
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=placement.weights_dtype,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=placement.weights_dtype,
        quantization_config=quantization,
        # 4-bit weights cannot be moved after loading: place them on the chosen GPU directly.
        device_map={"": placement.device.index or 0},
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=trust_remote_code,
        **chosen,
    )
    with peft_calls():
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


@contextlib.contextmanager
def peft_calls() -> Iterator[None]:
    """Around calls into PEFT: peft 0.21 still calls transformers' renamed
    ``is_gradient_checkpointing``, a FutureWarning no Tuneline user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def model_config(model_dir: Path, trust_remote_code: bool = False) -> Any:
    return AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)


def chat_messages(record: ChatRecord | Sequence[Message], system: str | None = None) -> list[dict[str, Any]]:
    """A record (or its prompt turns) as the ``messages`` list Hugging Face chat templates take:
    ``tool_calls`` as ``{"type": "function", "function": {"name", "arguments"}}`` with the
    arguments as a dict, tool results as role ``tool`` with ``tool_call_id``, reasoning as
    ``reasoning_content`` (the key of Qwen3's and DeepSeek's templates)."""
    if isinstance(record, ChatRecord):
        system, turns = record.system, record.messages
    else:
        turns = tuple(record)
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system is not None else []
    for m in turns:
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [
                {"type": "function", **({"id": c.id} if c.id else {}),
                 "function": {"name": c.name, "arguments": dict(c.arguments)}}
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            message["name"] = m.name
        if m.reasoning is not None:
            message["reasoning_content"] = m.reasoning
        out.append(message)
    return out


def chat_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]] | None:
    """Tool specs in the JSON-schema form ``apply_chat_template(tools=...)`` takes (None: no tools)."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ] or None


def read_model_manifest(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MODEL_MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
