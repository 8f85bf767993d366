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
  description = "Days to keep quarantined files and the lake's _pipeline/manifests/, _pipeline/results/ and _pipeline/usage/."
  type        = number
}

variable "noncurrent_version_retention_days" {
  description = "Days to keep overwritten or deleted object versions."
  type        = number
}

variable "landing_retention_days" {
  description = "Days raw landing objects are kept (resources.json landing_retention.days, which the ledger's terminal_ttl_days must outlast)."
  type        = number

  validation {
    condition     = var.landing_retention_days >= 1
    error_message = "landing_retention_days must be at least 1."
  }
}

variable "landing_noncurrent_version_retention_days" {
  description = "Days to keep expired or overwritten landing versions (resources.json landing_retention.noncurrent_days)."
  type        = number
}

variable "s3_vpc_endpoint_id" {
  description = "The S3 gateway endpoint of the VPC: the only network path to the buckets (aws:SourceVpce)."
  type        = string
}

variable "deployer_role_arn" {
  description = "Role that runs Terraform and tools.deploy from outside the VPC: the one principal the endpoint rule does not restrict."
  type        = string
}

variable "mwaa_execution_role_arn" {
  description = "MWAA's execution role: may read the assets bucket from outside the endpoint (its AWS-run components), nothing else."
  type        = string
}

variable "landing_writer_role_arns" {
  description = "Producer roles that write landing files from outside this VPC: they keep s3:PutObject (and AbortMultipartUpload) there, nothing else."
  type        = list(string)
}
