# The pipeline's buckets: landing (producers write NDJSON), lake (Parquet + the
# pipeline's manifests and results under _pipeline/), quarantine (rejected files)
# and assets (MWAA source: dags/, plugins/, requirements/; Glue code under glue/).

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Access is audited with CloudTrail S3 data events at the organisation level; server access logs would need a separate SSE-S3 bucket.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery decision outside this package; versioning plus PITR on the ledger cover operator error.
  #checkov:skip=CKV2_AWS_62:Only the landing bucket has consumers of its events (aws_s3_bucket_notification in the queue module).
  for_each = var.bucket_names

  bucket = each.value
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # One data key per bucket instead of one KMS call per object: at 500K files a
    # day this keeps KMS requests (and their cost) flat.
    bucket_key_enabled = true
  }
}

# Versioning everywhere: MWAA needs it on its source bucket (plugins.zip and
# requirements.txt are pinned by object version), and on the data buckets it turns
# an accidental overwrite or delete into a recoverable noncurrent version.
resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each   = aws_s3_bucket.this
  depends_on = [aws_s3_bucket_versioning.this]

  bucket = each.value.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Raw landing data has served its purpose once converted: kept for replays, not forever. The
  # expiration only leaves a delete marker (the bucket is versioned): the data itself goes with the
  # noncurrent version, a week later on landing. The ledger's terminal records outlast this
  # (settings.py checks terminal_ttl_days), so a version that is still listed is still known.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = each.key == "landing" ? var.landing_noncurrent_version_retention_days : var.noncurrent_version_retention_days
    }
  }

  dynamic "rule" {
    for_each = each.key == "landing" ? [""] : []
    content {
      id     = "expire-landing-data"
      status = "Enabled"
      filter {}
      expiration {
        days = var.landing_retention_days
      }
    }
  }

  # Delete markers left once their noncurrent version is gone would otherwise slow every listing.
  dynamic "rule" {
    for_each = each.key == "landing" ? [""] : []
    content {
      id     = "remove-expired-delete-markers"
      status = "Enabled"
      filter {}
      expiration {
        expired_object_delete_marker = true
      }
    }
  }

  # Quarantined files are kept long enough to be inspected and replayed, not forever.
  dynamic "rule" {
    for_each = each.key == "quarantine" ? [""] : []
    content {
      id     = "expire-quarantine"
      status = "Enabled"
      filter {}
      expiration {
        days = var.pipeline_retention_days
      }
    }
  }

  # Work in progress (a run's staging, a reprocess's or a compaction's copy of a day, under _work/) is removed by
  # whoever wrote it or by the saga's cleanup; what is left when all of those died goes after the pipeline
  # retention. Nothing there is worth recovering once deleted: its noncurrent versions go after a day, not
  # noncurrent_version_retention_days (S3 applies the shorter of two overlapping expirations).
  dynamic "rule" {
    for_each = contains(["lake", "quarantine"], each.key) ? [""] : []
    content {
      id     = "expire-work-in-progress"
      status = "Enabled"
      filter {
        prefix = "_work/"
      }
      expiration {
        days = var.pipeline_retention_days
      }
      noncurrent_version_expiration {
        noncurrent_days = 1
      }
    }
  }

  # Manifests and job results are only needed while the ledger still holds the
  # files they describe (terminal ledger items expire by TTL too); usage records
  # only until the day report has priced them.
  dynamic "rule" {
    for_each = each.key == "lake" ? ["manifests", "results", "usage"] : []
    content {
      id     = "expire-pipeline-${rule.value}"
      status = "Enabled"
      filter {
        prefix = "_pipeline/${rule.value}/"
      }
      expiration {
        days = var.pipeline_retention_days
      }
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  # Who may use a bucket from outside the S3 gateway endpoint besides the deploying role, and for
  # what (statement sid -> bucket, principals, the only actions they keep there):
  # - MWAA reads its source (dags/, plugins.zip, requirements.txt) with the execution role from
  #   components AWS runs outside this VPC too: the web server of a private environment, and the
  #   checks of an environment create or update. Reads only; its writes go through the endpoint.
  # - Producers that write landing files from elsewhere (var.landing_writer_role_arns): writes only.
  outside_endpoint_exceptions = {
    DenyMwaaAnythingButReadsOutsideVpcEndpoint = {
      bucket     = "assets"
      principals = [var.mwaa_execution_role_arn]
      actions    = ["s3:Get*", "s3:List*"]
    }
    DenyLandingWritersAnythingButWritesOutsideVpcEndpoint = {
      bucket     = "landing"
      principals = var.landing_writer_role_arns
      actions    = ["s3:PutObject", "s3:AbortMultipartUpload"]
    }
  }
  # Service-linked roles act for AWS services (Access Analyzer, Macie, ...) from AWS's own networks.
  service_linked_roles = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/*"

  exceptions_by_bucket = {
    for bucket in keys(var.bucket_names) : bucket => {
      for sid, exception in local.outside_endpoint_exceptions : sid => exception
      if exception.bucket == bucket && length(exception.principals) > 0
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  for_each = aws_s3_bucket.this

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
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

  # Data moves only through this VPC's S3 gateway endpoint. Not refused: the deploying role
  # (Terraform and tools.deploy run outside the VPC) and the exceptions above; AWS services acting
  # with their own service principal (aws:PrincipalIsAWSService), AWS services acting for a caller
  # with the caller's credentials (aws:ViaAWSService, such as Athena reading the lake for a user),
  # and service-linked roles. S3's own event notifications to SQS are no request on the bucket.
  statement {
    sid       = "DenyOutsideVpcEndpoint"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "aws:SourceVpce"
      values   = [var.s3_vpc_endpoint_id]
    }
    condition {
      test     = "ArnNotLikeIfExists"
      variable = "aws:PrincipalArn"
      values = concat(
        [var.deployer_role_arn, local.service_linked_roles],
        flatten([for exception in values(local.exceptions_by_bucket[each.key]) : exception.principals]),
      )
    }
    condition {
      test     = "BoolIfExists"
      variable = "aws:PrincipalIsAWSService"
      values   = ["false"]
    }
    condition {
      test     = "BoolIfExists"
      variable = "aws:ViaAWSService"
      values   = ["false"]
    }
  }

  # The exceptions keep only their actions outside the endpoint.
  dynamic "statement" {
    for_each = local.exceptions_by_bucket[each.key]
    content {
      sid         = statement.key
      effect      = "Deny"
      not_actions = statement.value.actions
      resources   = [each.value.arn, "${each.value.arn}/*"]
      principals {
        type        = "*"
        identifiers = ["*"]
      }
      condition {
        test     = "StringNotEquals"
        variable = "aws:SourceVpce"
        values   = [var.s3_vpc_endpoint_id]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = statement.value.principals
      }
    }
  }
}

# Renamed from tls_only: the policy now also keeps data on the VPC endpoint.
moved {
  from = aws_s3_bucket_policy.tls_only
  to   = aws_s3_bucket_policy.this
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this
  # S3 rejects a policy write while the public-access block is being applied.
  depends_on = [aws_s3_bucket_public_access_block.this]

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket[each.key].json
}
