"""Deterministic train/validation/test assignment from a hash of the conversation.

A record's split depends only on its content (the conversation key), so adding records never
moves existing ones between splits. Caps keep the records with the smallest keys, which is
equally stable.
"""

from __future__ import annotations

from tuneline.config import SplitConfig

__all__ = ["SPLITS", "split_for_key", "split_sql"]

SPLITS = ("train", "validation", "test")
_BUCKETS = 1_000_000


def split_for_key(key: int, config: SplitConfig) -> str:
    """Python twin of :func:`split_sql` for a 128-bit conversation key."""
    bucket = (key % _BUCKETS) / _BUCKETS
    if bucket < config.train:
        return "train"
    if bucket < config.train + config.validation:
        return "validation"
    return "test"


def _mod_sql(key_column: str) -> str:
    """``key % _BUCKETS`` for an unsigned 128-bit key, from its two 64-bit halves.

    DuckDB's UHUGEINT modulo is a slow generic routine (microseconds a row); with
    ``key = hi * 2**64 + lo`` the same number comes from 64-bit arithmetic, which cannot overflow
    because both factors of the product are below ``_BUCKETS``.
    """
    hi = f"(({key_column} >> 64)::UBIGINT % {_BUCKETS})"
    lo = f"(({key_column} & {2**64 - 1}::UHUGEINT)::UBIGINT % {_BUCKETS})"
    return f"(({hi} * {2**64 % _BUCKETS} + {lo}) % {_BUCKETS})"


def split_sql(key_column: str, config: SplitConfig) -> str:
    bucket = f"({_mod_sql(key_column)}::DOUBLE / {_BUCKETS})"
    return (
        f"CASE WHEN {bucket} < {config.train!r} THEN 'train' "
        f"WHEN {bucket} < {config.train + config.validation!r} THEN 'validation' ELSE 'test' END"
    )
