"""QLoRA is refused early, naming what is missing, on a machine without bitsandbytes or a GPU.

The 4-bit training path itself needs both and is not exercised here (see docs/local-backend.md).
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
from tuneline.backends.local.hf_models import select_placement
from tuneline.config import LocalTuneConfig, Target
from tuneline.errors import ConfigError, ValidationFailedError
from tuneline.lineage import DatasetVersion

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None,
    reason="bitsandbytes is installed: these tests check the refusal without it",
)

NO_BNB = "bitsandbytes is not installed (install the 'gpu' extra: pip install 'tuneline[gpu]')"
NO_GPU = "no CUDA GPU is available"


@pytest.fixture
def qlora_spec(tiny_model_dir: Path) -> Callable[..., JobSpec]:
    def make(**tune: object) -> JobSpec:
        dataset = DatasetVersion(
            name="tickets",
            version="v-qlora",
            uri="s3://tuneline-test/data/",
            target=Target.LOCAL,
            total=1,
            accepted=1,
            rejected=0,
            duplicates=0,
            splits={"train": 1},
            split_uris={"train": "s3://tuneline-test/data/train.jsonl"},
            tokens=0,
        )
        config = LocalTuneConfig.model_validate(
            {"base_model": str(tiny_model_dir), "adapter": "qlora", **tune}
        )
        return JobSpec(name="tickets", dataset=dataset, tune=config, output_uri="s3://tuneline-test/runs/")

    return make



@pytest.mark.parametrize(
    ("gpu", "named", "not_named"),
    [(False, [NO_BNB, NO_GPU], []), (True, [NO_BNB], [NO_GPU])],
    ids=["no-bitsandbytes-no-gpu", "gpu-without-bitsandbytes"],
)
def test_validate_refuses_qlora_naming_what_is_missing(
    qlora_spec: Callable[..., JobSpec],
    offline_backend: LocalBackend,
    monkeypatch: pytest.MonkeyPatch,
    gpu: bool,
    named: list[str],
    not_named: list[str],
) -> None:
    if gpu:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    elif torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValidationFailedError) as caught:
        offline_backend.validate(qlora_spec())
    text = str(caught.value)
    assert "tune.adapter 'qlora' cannot run here" in text and "Use adapter 'lora' on this machine" in text
    assert all(reason in text for reason in named)
    assert not any(reason in text for reason in not_named)


def test_qlora_on_cpu_names_the_device_setting() -> None:
    with pytest.raises(ConfigError, match="tune.device is 'cpu' \\(use 'auto' or 'cuda'\\)"):
        select_placement("cpu", "auto", "qlora")


def test_lora_still_runs_where_qlora_is_refused(
    qlora_spec: Callable[..., JobSpec], offline_backend: LocalBackend
) -> None:
    # The message's advice holds: the same job as LoRA validates on this machine.
    offline_backend.validate(qlora_spec(adapter="lora"))


def test_merging_an_adapter_into_a_4bit_base_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValidationError, match="tune.merge_adapter is not supported with adapter 'qlora'"):
        LocalTuneConfig(base_model=str(tiny_model_dir), adapter="qlora", merge_adapter=True)


@pytest.mark.parametrize("old", ["lora", "qlora", "full"])
def test_an_old_method_names_what_to_write_instead(old: str, tiny_model_dir: Path) -> None:
    with pytest.raises(ValidationError, match=rf"tune.method '{old}' is now tune.adapter: write `method: sft` and `adapter: {old}`"):
        LocalTuneConfig(base_model=str(tiny_model_dir), method=old)
