"""GPU-only paths, refused with a clear message where CUDA or their package is missing.

QLoRA is checked by :func:`tuneline.backends.hf_models.select_placement` (bitsandbytes, CUDA);
``precision: fp16`` likewise. The checks here are for the settings that only make sense on a GPU:
bf16 on a GPU without it, flash-attention, Liger kernels and vLLM rollouts. None is silently
downgraded: a config that asks for one runs with it or not at all.
"""

from __future__ import annotations

import importlib.util

from tuneline.config import LocalTuneConfig

__all__ = ["gpu_feature_problems"]

# setting -> (the module it imports, how to install it)
_PACKAGES = {
    "tune.attention 'flash_attention_2'": ("flash_attn", "the 'gpu' extra: pip install 'tuneline[gpu]'"),
    "tune.liger_kernel": ("liger_kernel", "the 'gpu' extra: pip install 'tuneline[gpu]'"),
    "tune.vllm": ("vllm", "the 'vllm' extra: pip install 'tuneline[vllm]'"),
}


def _asked_for(cfg: LocalTuneConfig) -> list[str]:
    asked = []
    if cfg.attention == "flash_attention_2":
        asked.append("tune.attention 'flash_attention_2'")
    if cfg.liger_kernel:
        asked.append("tune.liger_kernel")
    if cfg.vllm:
        asked.append("tune.vllm")
    return asked


def gpu_feature_problems(cfg: LocalTuneConfig) -> list[str]:
    import torch

    problems: list[str] = []
    if cfg.precision == "bf16" and cfg.device != "cpu" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        problems.append("tune.precision 'bf16' is not supported by this GPU: use 'fp16' or 'auto'")
    gpu = torch.cuda.is_available() and cfg.device != "cpu"
    for setting in _asked_for(cfg):
        module, install = _PACKAGES[setting]
        missing = []
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} is not installed (install {install})")
        if not gpu:
            missing.append("tune.device is 'cpu'" if cfg.device == "cpu" else "no CUDA GPU is available")
        if missing:
            problems.append(f"{setting} needs a CUDA GPU and {module}: " + "; ".join(missing) + f"; or leave {setting.split()[0]} at its default")
    return problems
