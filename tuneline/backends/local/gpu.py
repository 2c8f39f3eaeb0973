"""GPU-only paths, refused with a clear message where CUDA or their package is missing.

QLoRA is checked by :func:`tuneline.backends.local.hf_models.select_placement` (bitsandbytes, CUDA);
``precision: fp16`` likewise. The checks here are for the settings that only make sense on a GPU:
bf16 on a GPU without it, flash-attention, Liger kernels and vLLM rollouts. None is silently
downgraded: a config that asks for one runs with it or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from tuneline.backends.local.hf_models import gpu_path_missing
from tuneline.config import LocalTuneConfig

__all__ = ["gpu_feature_problems"]


class _GpuPath(NamedTuple):
    setting: str  # the config field, as the message names it
    value: str  # the value that asks for the path
    module: str  # what it imports
    extra: str  # the extra that installs it
    asked: Callable[[LocalTuneConfig], bool]


_GPU_PATHS = (
    _GpuPath("tune.attention", "'flash_attention_2'", "flash_attn", "gpu", lambda c: c.attention == "flash_attention_2"),
    _GpuPath("tune.liger_kernel", "true", "liger_kernel", "gpu", lambda c: c.liger_kernel),
    _GpuPath("tune.vllm", "true", "vllm", "vllm", lambda c: c.vllm),
)


def gpu_feature_problems(cfg: LocalTuneConfig) -> list[str]:
    import torch

    problems: list[str] = []
    if cfg.precision == "bf16" and cfg.device != "cpu" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        problems.append("tune.precision 'bf16' is not supported by this GPU: use 'fp16' or 'auto'")
    for path in (p for p in _GPU_PATHS if p.asked(cfg)):
        missing = gpu_path_missing(path.module, path.extra)
        if cfg.device == "cpu":
            missing.append("tune.device is 'cpu' (use 'auto' or 'cuda')")
        if missing:
            problems.append(
                f"{path.setting} {path.value} needs a CUDA GPU and {path.module}: " + "; ".join(missing)
                + f"; or leave {path.setting} at its default"
            )
    return problems
