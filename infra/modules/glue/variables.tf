variable "job_name" {
  type = string
}

variable "spec" {
  description = "The glue_job section of resources.json."
  type = object({
    glue_version        = string
    worker_type         = string
    number_of_workers   = number
    max_concurrent_runs = number
  })
}

variable "role_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "script_s3_uri" {
  description = "s3:// URI of ndjson_to_parquet.py (content-hashed key printed by tools.deploy)."
  type        = string
}

variable "extra_py_files_s3_uris" {
  description = "Default --extra-py-files, in order: the ndjson_pipeline zip and the job's ndjson_job zip; runs may override it."
  type        = list(string)
}

variable "timeout_minutes" {
  type = number
}

variable "log_retention_days" {
  type = number
}

variable "subnet_id" {
  description = "The private subnet the job's workers run in (Glue's NETWORK connection takes one)."
  type        = string
}

variable "endpoint_security_group_ids" {
  description = "Security groups of the VPC's interface endpoints: the job's only HTTPS destinations besides S3."
  type        = list(string)
}

variable "s3_prefix_list_id" {
  description = "Prefix list of the S3 gateway endpoint's service."
  type        = string
}
