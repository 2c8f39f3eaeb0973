"""The MLflow run that every stage of one lifecycle run logs into, and what the Prefect artifacts
of a run share: keys scoped per model, and http links a browser opens instead of ``s3://`` URIs."""

from __future__ import annotations

import re

from prefect import task

from tasks._retry import RETRY_DELAYS, transient_only
from tuneline.config import RunConfig
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext, start_lifecycle_run
from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = ["artifact_key", "browsable", "object_link", "run_artifacts_url", "start_tracking"]

# A presigned link is valid for at most 7 days (SigV4); long enough to review a run.
LINK_EXPIRES_S = 7 * 24 * 3600


def artifact_key(model_name: str, what: str) -> str:
    """``support-tickets-training-progress``: Prefect keys are lower-case letters, digits and dashes,
    and a key's history is one model's, never a mix of every model's runs."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{model_name}-{what}".lower()).strip("-")
    return slug[:200] or what


def browsable(store: ObjectStore, markdown: str, uri: str) -> str:
    """``markdown`` with its links to the object ``uri`` made links a browser opens."""
    return markdown.replace(f"]({uri})", f"]({object_link(store, uri)})")


def object_link(store: ObjectStore, uri: str, expires_s: int = LINK_EXPIRES_S) -> str:
    """An http(s) link to one S3 object that a browser opens (presigned GET); a prefix (ends with
    ``/``) has no such link and is returned as it is."""
    if not uri.startswith("s3://") or uri.endswith("/"):
        return uri
    loc = S3Uri.parse(uri)
    return str(
        store.client.generate_presigned_url(
            "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=expires_s
        )
    )


def run_artifacts_url(run_url: str, path: str = "") -> str:
    """The MLflow page of a run's artifacts (optionally opened on ``path``)."""
    return f"{run_url}/artifacts" + (f"/{path}" if path else "")


@task(name="start-tracking", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def start_tracking(config: RunConfig, flow_run_id: str | None, flow_run_name: str | None) -> str:
    ctx = StageContext(get_settings())
    return start_lifecycle_run(ctx, config, run_name=flow_run_name, tags={"tuneline.flow_run_id": flow_run_id or ""})
