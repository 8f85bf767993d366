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

data "aws_iam_policy_document" "tls_only" {
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
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each = aws_s3_bucket.this
  # S3 rejects a policy write while the public-access block is being applied.
  depends_on = [aws_s3_bucket_public_access_block.this]

  bucket = each.value.id
  policy = data.aws_iam_policy_document.tls_only[each.key].json
}
