variable "database_name" {
  description = "Glue database: the name prefix with '-' as '_', plus resources.json catalog.database."
  type        = string
}

variable "dataset" {
  description = "Dataset (table) name; tables/<dataset>.json must exist."
  type        = string
}

variable "lake_bucket" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "manage_catalog_encryption" {
  description = "Set the account's Data Catalog encryption (region-wide) to the data key."
  type        = bool
  default     = true
}

variable "name_prefix" {
  description = "Prefix of the table optimizers' role name."
  type        = string
}

variable "table_format" {
  description = "The pipeline setting table_format: hive (Parquet folders, a partition per dt) or iceberg (an Iceberg table with table optimizers)."
  type        = string
  default     = "hive"

  validation {
    condition     = contains(["hive", "iceberg"], var.table_format)
    error_message = "table_format must be hive or iceberg."
  }
}

variable "snapshot_retention_days" {
  description = "Iceberg: days a replaced snapshot stays readable (time travel) before the retention optimizer expires it and deletes the files only it names; at least 1, far beyond reprocess_grace_seconds."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_days >= 1
    error_message = "snapshot_retention_days must be at least 1 (queries planned on a replaced snapshot must finish)."
  }
}

variable "orphan_file_retention_days" {
  description = "Iceberg: days a file under the table's location that no snapshot names is kept before the orphan optimizer deletes it; longer than a conversion can wait for its commit (the landing retention, 7)."
  type        = number
  default     = 7

  validation {
    condition     = var.orphan_file_retention_days >= 7
    error_message = "orphan_file_retention_days must be at least the landing retention (7 days): a day's conversions can still be finalised until then."
  }
}

variable "compaction_min_input_files" {
  description = "Iceberg: small files a partition must have before the compaction optimizer rewrites them."
  type        = number
  default     = 100
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the table optimizers' role (empty: none)."
  type        = string
  default     = null
}
