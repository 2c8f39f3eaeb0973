"""The lineage tag vocabulary: every MLflow run / model-version tag and Bedrock job tag Tuneline
writes or reads, named once.

A tag name is part of the stored lineage (a registry search for ``tuneline.job_id`` finds the
versions of a job), so renaming one is a migration, not a refactor: change it here or nowhere.
"""

from __future__ import annotations

__all__ = [
    "APPROVED_TAG",
    "AUDIT_RECORD_URI_TAG",
    "BACKEND_TAG",
    "BASE_MODEL_TAG",
    "BASE_MODEL_VERSION_TAG",
    "BEDROCK_DATASET_TAG",
    "BEDROCK_DATASET_VERSION_TAG",
    "BEDROCK_JOB_IDENTITY_TAG",
    "BEDROCK_RUN_TAG",
    "CONFIG_HASH_TAG",
    "DATASET_URI_TAG",
    "DATASET_VERSION_TAG",
    "DECIDED_AT_TAG",
    "DECIDED_BY_TAG",
    "DECISION_REASONS_TAG",
    "EVAL_MODEL_ID_TAG",
    "EVAL_MODEL_TAG",
    "EVAL_RESULTS_URI_TAG",
    "EVAL_RUNS_TAG",
    "EVAL_TAG_PREFIX",
    "FLOW_RUN_ID_TAG",
    "GIT_COMMIT_TAG",
    "JOB_IDENTITY_TAG",
    "JOB_ID_TAG",
    "LIFECYCLE_RUN_TAG",
    "MODEL_CARD_URI_TAG",
    "MODEL_URI_TAG",
    "SERVING_ARN_TAG",
    "SERVING_TAG",
]

# --- MLflow run and model-version tags ---------------------------------------------------------
JOB_ID_TAG = "tuneline.job_id"  # the backend's job id; a re-run registers at most one version per job
JOB_IDENTITY_TAG = "tuneline.job_identity"  # hash(dataset version + tune config), see backends.base
BACKEND_TAG = "tuneline.backend"  # the provider name ("local", "bedrock")
BASE_MODEL_TAG = "tuneline.base_model"
# models:/<name>/<version> a run started from, when tune.base_model named a registered version
BASE_MODEL_VERSION_TAG = "tuneline.base_model_version"
MODEL_URI_TAG = "tuneline.model_uri"  # weights prefix (local) or custom-model ARN (Bedrock)
DATASET_VERSION_TAG = "tuneline.dataset_version"
DATASET_URI_TAG = "tuneline.dataset_uri"
CONFIG_HASH_TAG = "tuneline.config_hash"
GIT_COMMIT_TAG = "tuneline.git_commit"
FLOW_RUN_ID_TAG = "tuneline.flow_run_id"
EVAL_RESULTS_URI_TAG = "tuneline.eval_results_uri"
EVAL_TAG_PREFIX = "tuneline.eval."  # + metric key: the candidate's score on the version
# MLflow's evaluation runs, one per model: top-level runs (not nested, see evaluation.mlflow_views)
EVAL_RUNS_TAG = "tuneline.eval_runs"  # on the lifecycle run: "base=<run id>,candidate=<run id>,..."
LIFECYCLE_RUN_TAG = "tuneline.lifecycle_run_id"  # on an evaluation run: the lifecycle run it belongs to
EVAL_MODEL_TAG = "tuneline.eval_model"  # on an evaluation run: "base", "candidate" or "champion"
EVAL_MODEL_ID_TAG = "tuneline.eval_model_id"  # on an evaluation run: that model's URI or id
APPROVED_TAG = "tuneline.approved"
DECIDED_BY_TAG = "tuneline.decided_by"
DECIDED_AT_TAG = "tuneline.decided_at"
DECISION_REASONS_TAG = "tuneline.decision_reasons"
MODEL_CARD_URI_TAG = "tuneline.model_card_uri"
AUDIT_RECORD_URI_TAG = "tuneline.audit_record_uri"
SERVING_TAG = "tuneline.serving"
SERVING_ARN_TAG = "tuneline.serving_arn"

# --- AWS resource tags on Bedrock jobs (AWS tag keys allow ':' and '-', and are shown in the console)
BEDROCK_JOB_IDENTITY_TAG = "tuneline:job-identity"
BEDROCK_RUN_TAG = "tuneline:run"
BEDROCK_DATASET_TAG = "tuneline:dataset"
BEDROCK_DATASET_VERSION_TAG = "tuneline:dataset-version"
