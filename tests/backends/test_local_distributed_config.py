"""tune.distributed refused where it cannot run, each message naming the field and what to write
instead: bad values in the config, FSDP without CUDA GPUs, more processes than GPUs. And the launch
is torchrun's, on the worker module (the 2-process run itself: test_local_distributed.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.backends.local.distributed import resolve_processes, torchrun_command
from tuneline.config import LocalTuneConfig, load_run_config
from tuneline.errors import ConfigError, ValidationFailedError

RUN = """
name: tickets
data:
  source: data.jsonl
tune:
  backend: local
  base_model: models/tiny
  batch_size: 8
  distributed: {DISTRIBUTED}
"""


@pytest.mark.parametrize(
    ("distributed", "message"),
    [
        ("{processes: 0}", "tune.distributed.processes must be an integer from 1 to 64 or 'auto', not 0"),
        ("{processes: two}", "tune.distributed.processes must be an integer from 1 to 64 or 'auto', not 'two'"),
        ("{processes: 2, strategy: zero3}", "tune.local.distributed.strategy: Input should be 'ddp' or 'fsdp'"),
        ("{processes: 2, nodes: 2}", "tune.local.distributed.nodes: Extra inputs are not permitted"),
        ("{processes: 3}", "tune.batch_size 8 does not split evenly over tune.distributed.processes 3 .* use a multiple of 3, e.g. batch_size: 6"),
    ],
    ids=["zero", "not-a-number", "unknown-strategy", "unknown-key", "uneven-batch"],
)
def test_bad_distributed_settings_name_the_field(tmp_path: Path, distributed: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(RUN.replace("{DISTRIBUTED}", distributed), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_run_config(path)


def test_fsdp_with_qlora_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="strategy 'fsdp' is not supported with adapter 'qlora'.*use strategy 'ddp'"):
        LocalTuneConfig(base_model="m", adapter="qlora", distributed={"processes": 2, "strategy": "fsdp"})
    with pytest.raises(ValueError, match="merge_adapter is not supported with tune.distributed.strategy 'fsdp'"):
        LocalTuneConfig(base_model="m", merge_adapter=True, distributed={"processes": 2, "strategy": "fsdp"})


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: True)


def test_fsdp_on_cpu_processes_is_refused(offline_spec: Callable[..., JobSpec], offline_backend: LocalBackend) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        offline_backend.validate(offline_spec(device="cpu", distributed={"processes": 2, "strategy": "fsdp"}))
    assert "tune.distributed.strategy 'fsdp' needs CUDA GPUs (tune.device is 'cpu';" in str(caught.value)
    assert "use strategy 'ddp' on this machine" in str(caught.value)


def test_ddp_on_cpu_processes_validates(offline_spec: Callable[..., JobSpec], offline_backend: LocalBackend) -> None:
    offline_backend.validate(offline_spec(device="cpu", distributed={"processes": 2}))


def test_more_processes_than_gpus_is_refused(
    offline_spec: Callable[..., JobSpec], offline_backend: LocalBackend, two_gpus: None
) -> None:
    with pytest.raises(ValidationFailedError, match=r"tune.distributed.processes 4 exceeds the 2 CUDA GPU\(s\) here .*use processes: 2, or 'auto'"):
        offline_backend.validate(offline_spec(distributed={"processes": 4, "strategy": "fsdp"}))
    offline_backend.validate(offline_spec(distributed={"processes": 2, "strategy": "fsdp"}))


def test_auto_is_one_process_per_gpu(two_gpus: None) -> None:
    auto = LocalTuneConfig(base_model="m", distributed={"processes": "auto"})
    assert resolve_processes(auto) == 2
    assert resolve_processes(auto.model_copy(update={"device": "cpu"})) == 1  # no GPU to spread over
    assert resolve_processes(LocalTuneConfig(base_model="m")) == 1


def test_the_launch_is_torchrun_on_the_worker_module(tmp_path: Path) -> None:
    command = torchrun_command(tmp_path / "job", 2, tmp_path / "job" / "checkpoints" / "step-4")
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=2" in command
    module = command.index("-m", 3)
    assert command[module + 1] == "tuneline.backends.local.worker"
    assert command[-2:] == ["--resume", str(tmp_path / "job" / "checkpoints" / "step-4")]
    assert torchrun_command(tmp_path, 2, None)[-1] == "none"
