"""DPO, KTO and GRPO through TRL's real trainers on the tiny model, from the canonical records of
each kind: the numbers each method optimises move the right way."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.config import LocalTuneConfig, Target
from tuneline.lineage import DatasetVersion, JobState
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.service, pytest.mark.slow]


def _wrong(answer: str) -> str:
    triage = json.loads(answer)
    triage["intent"] = "billing" if triage.get("intent") != "billing" else "order_status"
    return json.dumps(triage, separators=(",", ":"))


def _records(kind: str, ticket_lines: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, line in enumerate(ticket_lines):
        chat = json.loads(line)
        user, answer = chat["messages"][0], chat["messages"][1]["content"]
        if not answer.startswith("{"):
            continue  # refusals: the tests below need a JSON triage to make a wrong one from
        system = chat.get("system")
        system = system[0]["text"] if isinstance(system, list) else system
        if kind == "preference":
            out.append({"kind": kind, "system": system, "prompt": [user],
                        "chosen": [{"role": "assistant", "content": answer}],
                        "rejected": [{"role": "assistant", "content": _wrong(answer)}]})
        elif kind == "pretrain":
            out.append({"kind": kind, "text": f"{user['content']}\nTriage: {answer}"})
        elif kind == "kto":
            good = i % 2 == 0
            out.append({"kind": kind, "system": system, "label": good,
                        "messages": [user, {"role": "assistant", "content": answer if good else _wrong(answer)}]})
        else:
            out.append({"kind": "rft", "system": system, "messages": [user], "reference_answer": json.loads(answer)})
    return out


@pytest.fixture
def method_spec(
    object_store: ObjectStore, s3_prefix: Callable[[str], str], ticket_lines: list[str], tiny_model_dir: Path
) -> Callable[..., JobSpec]:
    object_store.ensure_bucket()

    def make(kind: str, n_train: int = 48, **tune: object) -> JobSpec:
        prefix = s3_prefix("data")
        records = _records(kind, ticket_lines[: n_train + 8])
        splits = {"train": records[:n_train], "validation": records[n_train:]}
        uris = {
            name: object_store.put_bytes(f"{prefix}/{name}.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
            for name, rows in splits.items()
        }
        fields: dict[str, object] = {
            "base_model": str(tiny_model_dir), "adapter": "full", "batch_size": 4, "max_seq_length": 128,
            "eval_every_steps": 100, "checkpoint_every_steps": 100, "warmup_ratio": 0.0,
            "lr_scheduler": "constant", **tune,
        }
        dataset = DatasetVersion(
            name="tickets", version=f"v-{kind}", uri=prefix + "/", target=Target.LOCAL, total=len(records),
            accepted=len(records), rejected=0, duplicates=0, splits={k: len(v) for k, v in splits.items()},
            split_uris=uris, tokens=0,
        )
        return JobSpec(name="tickets", dataset=dataset, tune=LocalTuneConfig.model_validate(fields),
                       output_uri=s3_prefix("runs") + "/")

    return make


def _run(settings: Settings, store: ObjectStore, spec: JobSpec, sink: Any) -> Any:
    backend = LocalBackend(settings, store)
    status = backend.wait(spec, backend.submit(spec), sink)
    assert status.state == JobState.COMPLETED
    return backend.fetch_model(spec, status.job_id)


def _halves(values: list[float]) -> tuple[float, float]:
    half = len(values) // 2
    return sum(values[:half]) / half, sum(values[half:]) / (len(values) - half)


def test_dpo_grows_the_chosen_vs_rejected_margin(method_spec, make_settings, object_store, recording_sink) -> None:
    spec = method_spec("preference", method="dpo", max_steps=10, learning_rate=3e-3, beta=0.1)
    sink = recording_sink()
    model = _run(make_settings(), object_store, spec, sink)
    margins = sink.values("rewards/margins")
    assert len(margins) == 10
    first, second = _halves(margins)
    assert second > first and second > 0
    assert model.final_validation_loss is not None


def test_kto_lowers_its_loss(method_spec, make_settings, object_store, recording_sink) -> None:
    spec = method_spec("kto", method="kto", max_steps=10, learning_rate=3e-3)
    sink = recording_sink()
    _run(make_settings(), object_store, spec, sink)
    first, second = _halves(sink.values("train_loss"))
    assert second < first


def test_pretrain_lowers_its_loss_on_plain_text(method_spec, make_settings, object_store, recording_sink) -> None:
    spec = method_spec("pretrain", method="pretrain", max_steps=12, learning_rate=3e-3)
    sink = recording_sink()
    model = _run(make_settings(), object_store, spec, sink)
    first, second = _halves(sink.values("train_loss"))
    assert second < first
    assert model.final_validation_loss is not None


def test_pretrain_rows_keep_long_texts_whole_and_typed_special_tokens_as_text(tiny_model_dir) -> None:
    from tuneline.backends.local.data import pretrain_rows
    from tuneline.backends.local.hf_models import load_tokenizer
    from tuneline.backends.local.sequences import IGNORE_INDEX
    from tuneline.records import PretrainRecord

    tokenizer = load_tokenizer(tiny_model_dir)
    text = "order 12345 shipped <|end|> " * 40
    rows = pretrain_rows([PretrainRecord(text=text)], tokenizer, max_length=64)
    ids = [t for row in rows for t in row["input_ids"]]
    assert len(rows) > 1 and all(len(r["input_ids"]) <= 64 for r in rows)
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.decode(ids[:-1]) == tokenizer.decode(
        tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    assert tokenizer.convert_tokens_to_ids("<|end|>") not in ids[:-1]  # typed, so characters
    assert all(r["labels"][0] == IGNORE_INDEX and r["labels"][1:] == r["input_ids"][1:] for r in rows)


def test_grpo_raises_the_mean_grader_reward(method_spec, make_settings, object_store, recording_sink) -> None:
    # A reward the untrained model earns sometimes (an answer holding punctuation), so every group
    # of completions has some spread to learn from.
    rewards = [{"name": "regex", "options": {"pattern": "[?!.,]", "mode": "search"}}]
    spec = method_spec(
        "rft", n_train=32, method="grpo", rewards=rewards, max_steps=20, learning_rate=3e-2, batch_size=16,
        num_generations=8, max_completion_length=12,
    )
    sink = recording_sink()
    _run(make_settings(), object_store, spec, sink)
    first, second = _halves(sink.values("reward"))
    assert second > first
