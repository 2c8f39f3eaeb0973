"""The evaluate stage: candidate vs base vs champion on task, safety and general suites.

- :mod:`~tuneline.evaluation.suites`: ``LoadedSuite`` (config + records + content version);
- :mod:`~tuneline.evaluation.metrics`: per-example metrics and the ``METRICS`` registry;
- :mod:`~tuneline.evaluation.refusal`: the refusal detector behind the ``refusal`` metric;
- :mod:`~tuneline.evaluation.statistics`: paired bootstrap intervals;
- :mod:`~tuneline.evaluation.cache`: generations cached per (model, suite version, settings);
- :mod:`~tuneline.evaluation.runner`: ``evaluate_models``, one model in memory at a time;
- :mod:`~tuneline.evaluation.report`: the markdown report and the comparison chart;
- :mod:`~tuneline.evaluation.history`: DuckDB over every run's per-example Parquet files.
"""
