"""The five lifecycle stages as plain functions: domain logic wired to storage and tracking.

Each stage takes the run config, the settings and the ids of where to record (an MLflow run),
and returns the small record from ``tuneline.lineage`` plus any human-readable report. The
``tasks`` package wraps these for Prefect (retries, caching, artifacts); nothing here imports it.
"""
