# The dataset as a Glue Data Catalog table, so Athena, Spark and Redshift Spectrum can
# query the lake. Columns, SerDe and parameters come from tables/<dataset>.json, which
# `python -m tools.catalog` renders from the declared schema (the same definition the
# local stack creates); partitions are added by the pipeline as manifests finalise.

locals {
  table = jsondecode(file("${path.module}/tables/${var.dataset}.json"))
}

resource "aws_glue_catalog_database" "this" {
  name        = var.database_name
  description = "Query-ready datasets of the ${var.database_name} pipeline"
}

resource "aws_glue_catalog_table" "dataset" {
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
