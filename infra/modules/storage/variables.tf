variable "bucket_names" {
  description = "Bucket names keyed by role: landing, lake, quarantine, assets."
  type        = map(string)

  validation {
    condition     = toset(keys(var.bucket_names)) == toset(["landing", "lake", "quarantine", "assets"])
    error_message = "bucket_names must have exactly the keys landing, lake, quarantine and assets."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed key for SSE-KMS on every bucket."
  type        = string
}

variable "pipeline_retention_days" {
  description = "Days to keep quarantined files and the lake's _pipeline/manifests/ and _pipeline/results/."
  type        = number
}

variable "noncurrent_version_retention_days" {
  description = "Days to keep overwritten or deleted object versions."
  type        = number
}
