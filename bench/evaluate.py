"""Benchmark: the evaluate stage's local generation, one prompt at a time vs batched.

Answers the same prompts of the example task twice with the same model and greedy decoding --
``batch_size=1``, then batched (left padding, KV cache) -- checks that both give identical
outputs, and prints one JSON line with both times and the speed-up. Target: batched >= 4x faster
on 2 CPU cores. Exits 1 when the outputs differ.

    python bench/evaluate.py [--prompts 256] [--batch-size 64] [--max-new-tokens 32] [--model DIR]

Without ``--model``, the example's tiny model is built (randomly initialised; no download) under
``.tuneline/bench/``. A random model rarely emits its end token, so every answer runs to
``--max-new-tokens``: the worst case for batching, where no row finishes early.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from examples.support_tickets.generate import ticket_corpus
from tuneline.backends.local.generation import LocalGenerator
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import GenerationConfig
from tuneline.records import ChatRecord

_DATA = Path(__file__).resolve().parents[1] / "examples" / "support_tickets" / "data"


def _prompts(n: int) -> list[ChatRecord]:
    lines = (_DATA / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
    if len(lines) < n:
        raise SystemExit(f"{_DATA / 'tickets.jsonl'} has {len(lines)} records, fewer than --prompts {n}")
    return [ChatRecord.model_validate_json(line) for line in lines[:n]]


def _timed(
    generator: LocalGenerator, prompts: list[ChatRecord], config: GenerationConfig
) -> tuple[float, list[str]]:
    started = time.perf_counter()
    outputs = generator.generate(prompts, config)
    return time.perf_counter() - started, [g.text for g in outputs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--model", type=Path, default=None, help="A model directory; the example's tiny model when unset."
    )
    args = parser.parse_args()

    model_dir = args.model or build_tiny_model(
        Path(".tuneline") / "bench" / "tiny-model", corpus=ticket_corpus(_DATA)
    )
    prompts = _prompts(args.prompts)
    generator = LocalGenerator(model_dir, label="bench", device="auto")
    try:
        single = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=1)
        batched = single.model_copy(update={"batch_size": args.batch_size})
        # Warm-up: the first calls pay for lazy initialisation, not generation.
        generator.generate(prompts[:2], batched)
        one_at_a_time_s, one_outputs = _timed(generator, prompts, single)
        batched_s, batched_outputs = _timed(generator, prompts, batched)
    finally:
        generator.close()

    identical = one_outputs == batched_outputs
    print(
        json.dumps(
            {
                "bench": "evaluate",
                "prompts": len(prompts),
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
                "one_at_a_time_s": round(one_at_a_time_s, 3),
                "batched_s": round(batched_s, 3),
                "speedup": round(one_at_a_time_s / batched_s, 2),
                "target_speedup": 4.0,
                "identical_outputs": identical,
                "differing_outputs": sum(a != b for a, b in zip(one_outputs, batched_outputs, strict=True)),
                "threads": torch.get_num_threads(),
                "device": "cuda" if torch.cuda.is_available() else "cpu",
            }
        )
    )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
