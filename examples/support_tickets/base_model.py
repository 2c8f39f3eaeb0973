"""The example's base model: a tiny, randomly initialised Llama built locally (no download).

``python -m examples.support_tickets.base_model [PATH]`` builds it (idempotently) at
:data:`DEFAULT_PATH`, where ``run.yaml``'s ``tune.base_model`` points. Its tokenizer is trained on
the example's own texts, so tickets tokenize into few, word-sized tokens.

Three layers rather than two: copying a five-digit order id from the ticket needs an induction
circuit (a previous-token head feeding a matching head), which a third layer learns noticeably
faster at this width.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from examples.support_tickets.generate import ticket_corpus
from tuneline.backends.local.tiny_model import TINY_SIZE, build_tiny_model

__all__ = ["DEFAULT_PATH", "EXAMPLE_MODEL_SIZE", "build_example_base"]

DEFAULT_PATH = Path(".tuneline/models/tiny-base")
EXAMPLE_MODEL_SIZE: dict[str, Any] = {**TINY_SIZE, "num_hidden_layers": 3}


def build_example_base(path: str | Path = DEFAULT_PATH) -> Path:
    """Build (or keep, when already complete) the example's base model at ``path``."""
    return build_tiny_model(Path(path), ticket_corpus(), seed=0, **EXAMPLE_MODEL_SIZE)


if __name__ == "__main__":
    print(build_example_base(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH))
