"""Tuneline: a repeatable, auditable fine-tuning lifecycle.

The core library. It holds the domain logic (config, records, data preparation, tuning backends,
evaluation, governance, storage, the local stack) and never imports Prefect: the ``tasks`` and
``flows`` packages at the repository root wrap it for orchestration.
"""

__version__ = "0.1.0"
