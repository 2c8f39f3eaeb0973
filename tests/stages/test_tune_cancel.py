"""Cancelling a run stops the tuning job it was waiting on: the id is derived, not remembered."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from tuneline.backends.bedrock import BedrockBackend, bedrock_job_name
from tuneline.config import RunConfig
from tuneline.settings import Settings
from tuneline.stages.context import StageContext
from tuneline.stages.tune import cancel_tune, job_id_for, job_spec

ROLE = "arn:aws:iam::123456789012:role/bedrock-ft"


def test_cancel_stops_the_bedrock_job_of_this_config_and_dataset(lineage) -> None:
    settings = Settings(_env_file=None, s3_bucket="tuneline-test", s3_endpoint_url="http://127.0.0.1:1")  # type: ignore[call-arg]
    ctx = StageContext(settings)
    config = RunConfig(
        name="tickets",
        data={"source": "d.jsonl"},
        tune={"backend": "bedrock", "base_model": "amazon.nova-micro-v1:0:128k", "role_arn": ROLE},
    )
    dataset = lineage()[0]
    expected = bedrock_job_name("tickets", job_spec(ctx, config, dataset).identity)
    assert job_id_for(ctx, config, dataset) == expected

    client = boto3.client("bedrock", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_response("stop_model_customization_job", {}, {"jobIdentifier": expected})
        backend = BedrockBackend(settings, client=client, sleep=lambda s: None)
        assert cancel_tune(ctx, config, dataset, backend=backend) == expected
        stub.assert_no_pending_responses()
