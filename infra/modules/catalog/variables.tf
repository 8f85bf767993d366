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
