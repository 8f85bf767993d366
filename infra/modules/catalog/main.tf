# The dataset as a Glue Data Catalog table, so Athena, Spark, Redshift Spectrum, EMR and
# DuckDB can query the lake, in the format the pipeline setting table_format says:
#
# - hive: columns, SerDe and parameters from tables/<dataset>.json; partitions are added
#   by the pipeline as manifests finalise.
# - iceberg: an Iceberg table (schema with field ids, partition spec, properties) from
#   tables/<dataset>.iceberg.json, whose first metadata file Glue writes; every manifest
#   is then one commit by the pipeline (ndjson_pipeline/iceberg_table.py), and Glue's
#   table optimizers compact its files, expire old snapshots and delete orphan files.
#
# `python -m tools.catalog` renders both files from the declared schema: the same
# definitions the local stack creates. Switching formats creates the other table (the
# data already converted is not migrated: see docs/operating.md, Switching table format).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  table   = jsondecode(file("${path.module}/tables/${var.dataset}.json"))
  iceberg = jsondecode(file("${path.module}/tables/${var.dataset}.iceberg.json"))

  is_iceberg     = var.table_format == "iceberg"
  table_location = "s3://${var.lake_bucket}/${var.dataset}"
  lake_bucket    = "arn:${data.aws_partition.current.partition}:s3:::${var.lake_bucket}"
  glue_arn       = "arn:${data.aws_partition.current.partition}:glue:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  # The optimizers write their run logs to Glue's fixed log groups /aws-glue/iceberg-*/logs.
  logs_arn = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
}

resource "aws_glue_catalog_database" "this" {
  name        = var.database_name
  description = "Query-ready datasets of the ${var.database_name} pipeline"
}

resource "aws_glue_catalog_table" "dataset" {
  count = local.is_iceberg ? 0 : 1

  name          = local.table.table
  database_name = aws_glue_catalog_database.this.name
  table_type    = "EXTERNAL_TABLE"
  parameters    = local.table.parameters

  dynamic "partition_keys" {
    for_each = local.table.partition_keys
    content {
      name = partition_keys.value.Name
      type = partition_keys.value.Type
    }
  }

  storage_descriptor {
    location      = "s3://${var.lake_bucket}/${var.dataset}/"
    input_format  = local.table.serde.InputFormat
    output_format = local.table.serde.OutputFormat

    ser_de_info {
      serialization_library = local.table.serde.SerdeInfo.SerializationLibrary
      parameters            = local.table.serde.SerdeInfo.Parameters
    }

    dynamic "columns" {
      for_each = local.table.columns
      content {
        name = columns.value.Name
        type = columns.value.Type
      }
    }
  }
}

# The Hive table was a single resource before table_format existed.
moved {
  from = aws_glue_catalog_table.dataset
  to   = aws_glue_catalog_table.dataset[0]
}

resource "aws_glue_catalog_table" "iceberg" {
  count = local.is_iceberg ? 1 : 0

  name          = local.iceberg.table
  database_name = aws_glue_catalog_database.this.name
  table_type    = "EXTERNAL_TABLE"

  open_table_format_input {
    iceberg_input {
      metadata_operation = "CREATE"
      version            = local.iceberg.format_version

      iceberg_table_input {
        location   = local.table_location
        properties = local.iceberg.properties

        schema {
          schema_id = local.iceberg.schema.schema_id
          type      = "struct"

          dynamic "fields" {
            for_each = local.iceberg.schema.fields
            content {
              id       = fields.value.id
              name     = fields.value.name
              required = fields.value.required
              type     = jsonencode(fields.value.type)
            }
          }
        }

        partition_spec {
          spec_id = local.iceberg.partition_spec.spec_id

          dynamic "fields" {
            for_each = local.iceberg.partition_spec.fields
            content {
              name      = fields.value.name
              source_id = fields.value.source_id
              field_id  = fields.value.field_id
              transform = fields.value.transform
            }
          }
        }
      }
    }
  }

  lifecycle {
    # The pipeline's commits move the table on (its metadata location, new columns): Terraform creates it only.
    ignore_changes = [parameters, storage_descriptor, open_table_format_input]
  }
}

# ------------------------------------------------------------ Iceberg table optimizers

# Compaction: Glue rewrites a partition's small files (a manifest's, often a few MB) into
# files of the table's target size once enough have accumulated, in a commit of its own.
resource "aws_glue_catalog_table_optimizer" "compaction" {
  count = local.is_iceberg ? 1 : 0

  catalog_id    = data.aws_caller_identity.current.account_id
  database_name = aws_glue_catalog_database.this.name
  table_name    = aws_glue_catalog_table.iceberg[0].name
  type          = "compaction"

  configuration {
    role_arn = aws_iam_role.optimizer[0].arn
    enabled  = true

    compaction_configuration {
      iceberg_configuration {
        strategy        = "binpack"
        min_input_files = var.compaction_min_input_files
      }
    }
  }
}

# Snapshot retention: snapshots older than snapshot_retention_days (at least one day, far
# beyond the reprocess grace, so a query planned on a replaced snapshot finishes and the
# day before a reprocess can be read by time travel) are expired and the files only they
# name are deleted.
resource "aws_glue_catalog_table_optimizer" "retention" {
  count = local.is_iceberg ? 1 : 0

  catalog_id    = data.aws_caller_identity.current.account_id
  database_name = aws_glue_catalog_database.this.name
  table_name    = aws_glue_catalog_table.iceberg[0].name
  type          = "retention"

  configuration {
    role_arn = aws_iam_role.optimizer[0].arn
    enabled  = true

    retention_configuration {
      iceberg_configuration {
        snapshot_retention_period_in_days = var.snapshot_retention_days
        number_of_snapshots_to_retain     = 1
        clean_expired_files               = true
      }
    }
  }
}

# Orphan files: files under the table's location that no snapshot names and that are older
# than orphan_file_retention_days: staging leftovers of failed runs, output of a manifest
# compensated before its commit. Longer than a conversion can wait between publishing its
# files and its commit (a day can be closed for landing_retention days).
resource "aws_glue_catalog_table_optimizer" "orphan_file_deletion" {
  count = local.is_iceberg ? 1 : 0

  catalog_id    = data.aws_caller_identity.current.account_id
  database_name = aws_glue_catalog_database.this.name
  table_name    = aws_glue_catalog_table.iceberg[0].name
  type          = "orphan_file_deletion"

  configuration {
    role_arn = aws_iam_role.optimizer[0].arn
    enabled  = true

    orphan_file_deletion_configuration {
      iceberg_configuration {
        orphan_file_retention_period_in_days = var.orphan_file_retention_days
        location                             = "${local.table_location}/"
      }
    }
  }
}

data "aws_iam_policy_document" "optimizer_trust" {
  count = local.is_iceberg ? 1 : 0

  statement {
    sid     = "GlueAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# What the three optimizers do, on this table only: read and rewrite its files, commit.
data "aws_iam_policy_document" "optimizer" {
  count = local.is_iceberg ? 1 : 0

  statement {
    sid       = "TableFiles"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.lake_bucket}/${var.dataset}/*"]
  }
  statement {
    sid       = "TableListing"
    actions   = ["s3:ListBucket"]
    resources = [local.lake_bucket]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.dataset}/*"]
    }
  }
  statement {
    sid     = "TableCommits"
    actions = ["glue:GetTable", "glue:UpdateTable"]
    resources = [
      "${local.glue_arn}:catalog",
      "${local.glue_arn}:database/${var.database_name}",
      "${local.glue_arn}:table/${var.database_name}/${var.dataset}",
    ]
  }
  statement {
    sid       = "DataKeyViaS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
  statement {
    sid     = "OptimizerLogs"
    actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [
      "${local.logs_arn}:log-group:/aws-glue/iceberg-compaction/logs:*",
      "${local.logs_arn}:log-group:/aws-glue/iceberg-retention/logs:*",
      "${local.logs_arn}:log-group:/aws-glue/iceberg-orphan-file-deletion/logs:*",
    ]
  }
}

resource "aws_iam_role" "optimizer" {
  count = local.is_iceberg ? 1 : 0

  name                 = "${var.name_prefix}-table-optimizer"
  assume_role_policy   = data.aws_iam_policy_document.optimizer_trust[0].json
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "optimizer" {
  count = local.is_iceberg ? 1 : 0

  name   = "table-optimizer"
  role   = aws_iam_role.optimizer[0].id
  policy = data.aws_iam_policy_document.optimizer[0].json
}

# Catalog metadata (table definitions, partitions) encrypted with the data key. The
# setting is account- and region-wide: leave it off where another stack owns it.
resource "aws_glue_data_catalog_encryption_settings" "this" {
  count = var.manage_catalog_encryption ? 1 : 0

  data_catalog_encryption_settings {
    connection_password_encryption {
      return_connection_password_encrypted = true
      aws_kms_key_id                       = var.kms_key_arn
    }
    encryption_at_rest {
      catalog_encryption_mode = "SSE-KMS"
      sse_aws_kms_key_id      = var.kms_key_arn
    }
  }
}
