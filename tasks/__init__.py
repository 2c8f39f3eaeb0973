"""Prefect tasks: thin wrappers that add retries, caching and UI artifacts to ``tuneline.stages``.

Tasks never import ``flows``; an import-linter contract enforces the layering.
"""
