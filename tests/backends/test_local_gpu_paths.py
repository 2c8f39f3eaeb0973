"""The GPU paths (flash-attention, Liger kernels, vLLM rollouts): refused before training, naming
what is missing, on a machine without CUDA or their package; the attention choice reaches the model.

The kernels themselves need a CUDA GPU and are not exercised here (see docs/local-backend.md).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.backends.local.hf_models import load_causal_lm, select_placement
from tuneline.config import GraderConfig, LocalTuneConfig
from tuneline.errors import ValidationFailedError

# setting -> (config, the module it needs, the install advice)
GPU_PATHS = {
    "flash-attention": ({"attention": "flash_attention_2"}, "flash_attn", "tuneline[gpu]"),
    "liger": ({"liger_kernel": True}, "liger_kernel", "tuneline[gpu]"),
    "vllm": ({"vllm": True, "method": "grpo", "rewards": [GraderConfig(name="json_valid")]}, "vllm", "tuneline[vllm]"),
}
SETTING = {"flash-attention": "tune.attention 'flash_attention_2'", "liger": "tune.liger_kernel true", "vllm": "tune.vllm true"}



@pytest.mark.parametrize("path", sorted(GPU_PATHS))
@pytest.mark.parametrize("gpu", [False, True], ids=["no-gpu", "gpu-without-the-package"])
def test_a_gpu_path_is_refused_naming_what_is_missing(
    path: str, gpu: bool, offline_spec: Callable[..., JobSpec], offline_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune, module, extra = GPU_PATHS[path]
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed: this test checks the refusal without it")
    if gpu:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: True)
    elif torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValidationFailedError) as caught:
        offline_backend.validate(offline_spec(**tune))
    text = str(caught.value)
    assert f"{SETTING[path]} needs a CUDA GPU and {module}" in text
    assert f"{module} is not installed (install the" in text and extra in text
    assert ("no CUDA GPU is available" in text) is not gpu
    assert "or leave" in text  # and what to do instead: the default runs here


def test_on_the_cpu_device_the_refusal_names_the_device_setting(
    offline_spec: Callable[..., JobSpec], offline_backend: LocalBackend
) -> None:
    with pytest.raises(ValidationFailedError, match="tune.liger_kernel true needs a CUDA GPU .*tune.device is 'cpu'"):
        offline_backend.validate(offline_spec(liger_kernel=True, device="cpu"))


def test_vllm_is_for_grpo_only(tiny_model_dir: Path) -> None:
    with pytest.raises(ValidationError, match="tune.vllm applies to method 'grpo' only"):
        LocalTuneConfig(base_model=str(tiny_model_dir), method="sft", vllm=True)


def test_the_defaults_validate_where_the_gpu_paths_are_refused(
    offline_spec: Callable[..., JobSpec], offline_backend: LocalBackend
) -> None:
    offline_backend.validate(offline_spec())


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_attention_setting_is_the_loaded_models_attn_implementation(tiny_model_dir: Path, attention: str) -> None:
    model = load_causal_lm(tiny_model_dir, select_placement("cpu"), attention=attention)
    assert model.config._attn_implementation == attention
