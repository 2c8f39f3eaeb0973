"""The data-arrival sensor against a real SeaweedFS: new files are announced once, and only once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tuneline.errors import ConfigError
from tuneline.stages.sensor import DataSensor
from tuneline.storage.s3 import ObjectStore

pytestmark = pytest.mark.service


@pytest.fixture
def watched(object_store: ObjectStore, s3_prefix: Callable[[str], str]) -> Callable[[], DataSensor]:
    """Factory of sensors on one fresh prefix with one fresh state object (each call: a new process, say)."""
    prefix = s3_prefix("incoming") + "/"
    state = s3_prefix("sensor-state") + "/state.json"
    return lambda: DataSensor(object_store, prefix, state_uri=state)


def put(store: ObjectStore, sensor: DataSensor, name: str, body: bytes = b'{"messages": []}\n') -> str:
    return store.put_bytes(sensor.prefix + name, body)


def test_new_files_are_announced_once_across_sensor_instances(object_store: ObjectStore, watched) -> None:
    sensor = watched()
    first = put(object_store, sensor, "a.jsonl")
    second = put(object_store, sensor, "b.csv", b"prompt,completion\nx,y\n")
    put(object_store, sensor, "notes.txt", b"not a dataset")

    arrived = sensor.poll()
    assert {o.uri for o in arrived} == {first, second}
    assert arrived == sorted(arrived, key=lambda o: (o.last_modified, o.uri))
    assert sensor.poll() == arrived  # polling alone remembers nothing
    sensor.remember(arrived)

    restarted = watched()
    assert restarted.poll() == []
    third = put(object_store, restarted, "c.jsonl")
    assert [o.uri for o in restarted.poll()] == [third]


def test_a_file_overwritten_with_new_content_is_new_again(object_store: ObjectStore, watched) -> None:
    sensor = watched()
    uri = put(object_store, sensor, "a.jsonl", b"1\n")
    [before] = sensor.poll()
    sensor.remember([before])
    put(object_store, sensor, "a.jsonl", b"2\n")
    [after] = sensor.poll()
    assert after.uri == uri and after.etag != before.etag
    assert after.identity != before.identity


def test_the_event_identity_is_stable(object_store: ObjectStore, watched) -> None:
    sensor = watched()
    put(object_store, sensor, "a.jsonl")
    assert [o.identity for o in sensor.poll()] == [o.identity for o in watched().poll()]


@pytest.mark.parametrize(
    ("prefix", "state", "message"),
    [
        pytest.param("s3://bucket", None, "not a whole bucket", id="bucket-only"),
        pytest.param("s3://bucket/in/", "s3://bucket/in/state.json", "must not lie under", id="state-inside"),
    ],
)
def test_bad_prefixes_are_refused(object_store: ObjectStore, prefix: str, state: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DataSensor(object_store, prefix, state_uri=state)


def test_a_state_object_of_another_prefix_is_refused(object_store: ObjectStore, watched, s3_prefix) -> None:
    sensor = watched()
    sensor.remember([])
    other = DataSensor(object_store, s3_prefix("elsewhere") + "/", state_uri=sensor.state_uri)
    with pytest.raises(ConfigError, match="belongs to prefix"):
        other.poll()
