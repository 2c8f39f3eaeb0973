"""Prefect tasks: thin wrappers that add retries, caching and UI artifacts to ``tuneline.stages``.

Tasks never import ``flows``; an import-linter contract enforces the layering.

Every task says ``persist_result=False``: Prefect persists results with pickle, and unpickling
from a shared result store runs whatever code it holds. Nothing is lost by it: the stages are
idempotent by content hash (dataset version, job identity), so a re-run finds their outputs.
"""
