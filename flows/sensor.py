"""The data-arrival sensor: a short scheduled flow that announces new files as Prefect events.

Each new file under the watched prefix becomes one ``tuneline.dataset.arrived`` event whose
resource id is the file's s3:// URI; the ``on-new-data`` deployment's trigger starts a retraining
run from it. The event id is derived from the file's URI and ETag, so an event re-sent after a
crash is recognised by the server as one already seen.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.events import emit_event

from tuneline.settings import get_settings
from tuneline.stages.sensor import DataSensor
from tuneline.storage.s3 import ObjectStore

__all__ = ["DATASET_ARRIVED", "watch_for_data"]

DATASET_ARRIVED = "tuneline.dataset.arrived"


@flow(name="watch-for-data", persist_result=False)
def watch_for_data(prefix: str, model_name: str | None = None, state_uri: str | None = None) -> list[str]:
    """Emit one `tuneline.dataset.arrived` event per data file new under `prefix`; return their URIs.

    Args:
        prefix: the watched s3:// prefix (e.g. s3://tuneline/incoming/support-tickets/).
        model_name: recorded on each event as the label `tuneline.model`, which deployment triggers match.
        state_uri: where the sensor remembers what it has seen; by default under s3://<bucket>/sensors/.
    """
    logger = get_run_logger()
    sensor = DataSensor(ObjectStore(get_settings()), prefix, state_uri=state_uri)
    arrived = sensor.poll()
    for obj in arrived:
        resource = {
            "prefect.resource.id": obj.uri,
            "prefect.resource.name": obj.uri.rsplit("/", 1)[-1],
            "tuneline.prefix": sensor.prefix,
            "tuneline.etag": obj.etag,
        }
        if model_name:
            resource["tuneline.model"] = model_name
        emit_event(
            event=DATASET_ARRIVED,
            resource=resource,
            id=obj.identity,
            # occurred: now, not the upload time; triggers window on it
            payload={"size": obj.size, "last_modified": obj.last_modified.isoformat()},
        )
        logger.info("new data: %s (%d bytes)", obj.uri, obj.size)
    # Remembered after the events went out: a crash in between re-sends them with the same ids.
    sensor.remember(arrived)
    if not arrived:
        logger.info("nothing new under %s", sensor.prefix)
    return [obj.uri for obj in arrived]
