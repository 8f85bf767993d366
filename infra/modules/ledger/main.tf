# The ledger: one item per landing file version; a sparse GSI finds pending work by
# day shard; terminal items expire through TTL. Shape from resources.json via var.spec.

resource "aws_dynamodb_table" "ledger" {
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = var.spec.partition_key
  range_key                   = var.spec.sort_key
  deletion_protection_enabled = true

  attribute {
    name = var.spec.partition_key
    type = "S"
  }
  attribute {
    name = var.spec.sort_key
    type = "S"
  }
  attribute {
    name = var.spec.work_index.partition_key
    type = "S"
  }
  attribute {
    name = var.spec.work_index.sort_key
    type = "S"
  }

  global_secondary_index {
    name               = var.spec.work_index.name
    hash_key           = var.spec.work_index.partition_key
    range_key          = var.spec.work_index.sort_key
    projection_type    = "INCLUDE"
    non_key_attributes = var.spec.work_index.projected_attributes
  }

  ttl {
    attribute_name = var.spec.ttl_attribute
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}
