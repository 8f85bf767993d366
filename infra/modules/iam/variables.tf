variable "name_prefix" {
  type = string
}

variable "mwaa_environment_name" {
  type = string
}

variable "bucket_arns" {
  description = "Bucket ARNs keyed by role: landing, lake, quarantine, assets."
  type        = map(string)
}

variable "landing_prefix" {
  type = string
}

variable "dataset" {
  description = "Dataset prefix of the lake (the pipeline setting 'dataset')."
  type        = string
}

variable "queue_arn" {
  type = string
}

variable "queue_kms_key_arn" {
  type = string
}

variable "data_kms_key_arn" {
  type = string
}

variable "ledger_table_arn" {
  type = string
}

variable "ledger_work_index_arn" {
  type = string
}

variable "glue_job_arn" {
  type = string
}

variable "glue_log_group_name" {
  type = string
}

variable "glue_security_configuration_name" {
  type = string
}

variable "alerts_topic_arn" {
  type = string
}

variable "alerts_kms_key_arn" {
  type = string
}

variable "metric_namespace" {
  type = string
}

variable "catalog_database" {
  description = "Glue Data Catalog database of the dataset's table (partitions are added to it)."
  type        = string
}

variable "glue_connection_name" {
  description = "The Glue job's NETWORK connection (Glue reads it with the job's role to place the workers)."
  type        = string
}

variable "glue_subnet_id" {
  description = "Subnet of that connection: the only one the job's role may create network interfaces in."
  type        = string
}

variable "glue_security_group_id" {
  description = "Security group of that connection: the only one the job's role may attach to its network interfaces."
  type        = string
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of both roles (an IAM policy ARN), or null for none."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be an IAM policy ARN or null."
  }
}
