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
