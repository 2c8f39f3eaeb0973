"""GPU-only paths, refused with a clear message where CUDA or their package is missing.

QLoRA is checked by :func:`tuneline.backends.hf_models.select_placement` (bitsandbytes, CUDA);
``precision: fp16`` likewise. The checks here are for the settings that only make sense on a GPU.
"""

from __future__ import annotations

from tuneline.config import LocalTuneConfig

__all__ = ["gpu_feature_problems"]


def gpu_feature_problems(cfg: LocalTuneConfig) -> list[str]:
    import torch

    problems: list[str] = []
    if cfg.precision == "bf16" and cfg.device != "cpu" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        problems.append("tune.precision 'bf16' is not supported by this GPU: use 'fp16' or 'auto'")
    return problems
