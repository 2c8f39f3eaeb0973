# Tuneline on AWS: the bucket, its KMS key, the role Bedrock assumes for model customization jobs,
# and (optionally) an EventBridge rule for those jobs' state changes.

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ "app" = "tuneline" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  bucket_arn = aws_s3_bucket.tuneline.arn

  bedrock_read_object_arns  = [for p in var.bedrock_read_key_patterns : "${local.bucket_arn}/${p}"]
  bedrock_write_object_arns = [for p in var.bedrock_write_key_patterns : "${local.bucket_arn}/${p}"]
}

# --- KMS ----------------------------------------------------------------------------------------

data "aws_iam_policy_document" "kms" {
  # Delegates the key's use to IAM policies of this account (the Bedrock role's among them);
  # without it only the key policy could grant anything.
  statement {
    sid       = "AccountIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # EventBridge publishes to the topic, which this key encrypts.
  dynamic "statement" {
    for_each = var.enable_events ? [1] : []

    content {
      sid       = "EventBridgePublishToEncryptedTopic"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }
    }
  }
}

resource "aws_kms_key" "tuneline" {
  description             = "${var.name_prefix}: datasets, runs, evaluations and audit records in s3://${var.bucket_name}"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "tuneline" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.tuneline.key_id
}

# --- S3 -----------------------------------------------------------------------------------------

resource "aws_s3_bucket" "tuneline" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_public_access_block" "tuneline" {
  bucket = aws_s3_bucket.tuneline.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: access is decided by IAM and the bucket policy alone.
resource "aws_s3_bucket_ownership_controls" "tuneline" {
  bucket = aws_s3_bucket.tuneline.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioning keeps every overwritten or deleted dataset, checkpoint and audit record recoverable.
resource "aws_s3_bucket_versioning" "tuneline" {
  bucket = aws_s3_bucket.tuneline.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "tuneline" {
  bucket = aws_s3_bucket.tuneline.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.tuneline.arn
    }
    # One data key per bucket instead of one KMS call per object.
    bucket_key_enabled = true
  }
}

# Object Lock on, without a default retention: a default would lock every dataset and checkpoint
# version too. Tuneline writes each object under audit/ with its own retention (mode and days from
# TUNELINE_AUDIT_RETENTION_MODE / _DAYS, see the tuneline_env output) once it sees the lock, and the
# bucket policy refuses any audit/ write without that mode. This resource enables the lock on an
# existing bucket too; `object_lock_enabled` on aws_s3_bucket would replace the bucket instead.
# Irreversible: S3 never turns Object Lock off again, nor lets versioning be suspended.
resource "aws_s3_bucket_object_lock_configuration" "tuneline" {
  bucket              = aws_s3_bucket.tuneline.id
  object_lock_enabled = "Enabled"

  depends_on = [aws_s3_bucket_versioning.tuneline]
}

# Old versions expire only under the prefixes named here, so never under audit/ (a lifecycle
# filter cannot exclude a prefix). A prefix Tuneline adds later keeps its old versions until it is
# listed. The multipart clean-up covers the whole bucket: it removes unfinished uploads, never an
# object or a version.
resource "aws_s3_bucket_lifecycle_configuration" "tuneline" {
  bucket = aws_s3_bucket.tuneline.id

  dynamic "rule" {
    for_each = toset(var.noncurrent_version_prefixes)

    content {
      id     = "expire-noncurrent-versions-${trimsuffix(rule.value, "/")}"
      status = "Enabled"

      filter {
        prefix = rule.value
      }

      noncurrent_version_expiration {
        noncurrent_days = var.noncurrent_version_days
      }
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.tuneline]
}

data "aws_iam_policy_document" "bucket" {
  # Every audit record is written locked, in the configured mode: a write under audit/ without a
  # retention (Null) or with the other mode is refused, whoever sends it.
  statement {
    sid       = "DenyUnlockedAuditRecords"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/audit/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:object-lock-mode"
      values   = ["true"]
    }
  }

  statement {
    sid       = "DenyAuditRecordsInAnotherLockMode"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/audit/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:object-lock-mode"
      values   = [var.audit_retention_mode]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # A write may leave the encryption headers out (the bucket default, this key, applies) but may
  # not ask for another algorithm or another key. StringNotEquals, not ...IfExists: a request
  # without the header must not match.
  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyOtherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.tuneline.arn]
    }
  }
}

resource "aws_s3_bucket_policy" "tuneline" {
  bucket = aws_s3_bucket.tuneline.id
  policy = data.aws_iam_policy_document.bucket.json

  # A policy put before the public access block could be judged against the account's settings
  # of the moment; order them.
  depends_on = [aws_s3_bucket_public_access_block.tuneline]
}

# --- The role Bedrock assumes for model customization -----------------------------------------

data "aws_iam_policy_document" "bedrock_trust" {
  statement {
    sid     = "BedrockModelCustomizationJobs"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["bedrock.amazonaws.com"]
    }

    # Only Bedrock acting for this account's customization jobs (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:bedrock:${var.aws_region}:${local.account_id}:model-customization-job/*"]
    }
  }
}

resource "aws_iam_role" "bedrock_customization" {
  name               = "${var.name_prefix}-bedrock-customization"
  description        = "Assumed by Amazon Bedrock for Tuneline's model customization jobs: reads their data, writes their output."
  assume_role_policy = data.aws_iam_policy_document.bedrock_trust.json
}

data "aws_iam_policy_document" "bedrock_access" {
  statement {
    sid       = "ReadTrainingData"
    actions   = ["s3:GetObject"]
    resources = local.bedrock_read_object_arns
  }

  statement {
    sid       = "WriteJobOutput"
    actions   = ["s3:PutObject"]
    resources = local.bedrock_write_object_arns
  }

  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = concat(var.bedrock_read_key_patterns, var.bedrock_write_key_patterns)
    }
  }

  # The bucket's key, only through S3 and only for this bucket's objects.
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.tuneline.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.aws_region}.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [local.bucket_arn, "${local.bucket_arn}/*"]
    }
  }
}

resource "aws_iam_role_policy" "bedrock_access" {
  name   = "${var.name_prefix}-bedrock-data"
  role   = aws_iam_role.bedrock_customization.id
  policy = data.aws_iam_policy_document.bedrock_access.json
}

# --- Optional: Bedrock job state changes to SNS ------------------------------------------------

resource "aws_cloudwatch_event_rule" "bedrock_job_state" {
  count = var.enable_events ? 1 : 0

  name        = "${var.name_prefix}-bedrock-job-state"
  description = "Amazon Bedrock model customization job state changes."
  event_pattern = jsonencode({
    source        = ["aws.bedrock"]
    "detail-type" = ["Model Customization Job State Change"]
  })
}

resource "aws_sns_topic" "bedrock_events" {
  count = var.enable_events ? 1 : 0

  name              = "${var.name_prefix}-bedrock-job-state"
  kms_master_key_id = aws_kms_key.tuneline.arn
}

data "aws_iam_policy_document" "bedrock_events_topic" {
  count = var.enable_events ? 1 : 0

  statement {
    sid       = "EventBridgePublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.bedrock_events[0].arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.bedrock_job_state[0].arn]
    }
  }
}

resource "aws_sns_topic_policy" "bedrock_events" {
  count = var.enable_events ? 1 : 0

  arn    = aws_sns_topic.bedrock_events[0].arn
  policy = data.aws_iam_policy_document.bedrock_events_topic[0].json
}

resource "aws_cloudwatch_event_target" "bedrock_job_state_to_sns" {
  count = var.enable_events ? 1 : 0

  rule      = aws_cloudwatch_event_rule.bedrock_job_state[0].name
  target_id = "sns"
  arn       = aws_sns_topic.bedrock_events[0].arn
}
