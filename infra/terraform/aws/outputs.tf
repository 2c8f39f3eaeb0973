output "bucket_name" {
  description = "TUNELINE_S3_BUCKET."
  value       = aws_s3_bucket.tuneline.bucket
}

output "bucket_arn" {
  value = aws_s3_bucket.tuneline.arn
}

output "kms_key_arn" {
  description = "Key that encrypts the bucket; also usable as the Bedrock custom model key (tune.kms_key_id)."
  value       = aws_kms_key.tuneline.arn
}

output "bedrock_customization_role_arn" {
  description = "tune.role_arn of a Bedrock run config."
  value       = aws_iam_role.bedrock_customization.arn
}

output "events_topic_arn" {
  description = "SNS topic receiving Bedrock job state changes (null unless enable_events)."
  value       = try(aws_sns_topic.bedrock_events[0].arn, null)
}

output "events_rule_arn" {
  value = try(aws_cloudwatch_event_rule.bedrock_job_state[0].arn, null)
}

output "tuneline_env" {
  description = "Settings for Tuneline against this bucket (credentials come from the AWS chain)."
  value = {
    TUNELINE_S3_ENDPOINT_URL = ""
    TUNELINE_S3_BUCKET       = aws_s3_bucket.tuneline.bucket
    TUNELINE_AWS_REGION      = var.aws_region
    TUNELINE_BEDROCK_REGION  = var.aws_region
    # The headers the bucket policy asks every PutObject for (DenyOtherEncryption, DenyOtherKmsKey):
    # left unset, Tuneline would ask AWS S3 for AES256 and every write would be refused.
    TUNELINE_S3_SERVER_SIDE_ENCRYPTION = "aws:kms"
    TUNELINE_S3_SSE_KMS_KEY_ID         = aws_kms_key.tuneline.arn
    # The retention Tuneline gives each audit record; the bucket policy refuses another mode.
    TUNELINE_AUDIT_RETENTION_MODE = var.audit_retention_mode
    TUNELINE_AUDIT_RETENTION_DAYS = tostring(var.audit_retention_days)
  }
}
