variable "aws_region" {
  type = string
}

variable "name_prefix" {
  description = "Prefix of every resource name (bucket names are global: pick one unique to your organisation). Same rule as the pipeline setting name_prefix."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-42 lowercase letters, digits or '-'."
  }
}

variable "dataset" {
  description = "Lake prefix the Glue job writes (the pipeline setting 'dataset')."
  type        = string
  default     = "events"
}

variable "table_format" {
  description = "The dataset's table: hive (Parquet folders, a catalog partition per dt) or iceberg (an Iceberg table, one commit per manifest, with Glue's table optimizers). Must equal the pipeline setting table_format; switching creates the other table (docs/operating.md)."
  type        = string
  default     = "hive"
}

variable "snapshot_retention_days" {
  description = "Iceberg: days a replaced snapshot stays readable by time travel before the retention optimizer expires it."
  type        = number
  default     = 7
}

variable "orphan_file_retention_days" {
  description = "Iceberg: days an unreferenced file under the table's location is kept before the orphan optimizer deletes it (>= the landing retention, 7)."
  type        = number
  default     = 7
}

variable "pipeline_retention_days" {
  description = "Days to keep quarantined files, manifests, results and usage records; keep >= the ledger's terminal_ttl_days (40)."
  type        = number
  default     = 40
}

variable "noncurrent_version_retention_days" {
  type    = number
  default = 30
}

variable "glue_script_key" {
  description = "Assets-bucket key of the Glue script, printed by `python -m tools.deploy` (content-hashed). The default is a placeholder until the first deploy."
  type        = string
  default     = "glue/scripts/placeholder/ndjson_to_parquet.py"
}

variable "glue_extra_py_files_key" {
  description = "Assets-bucket key of the ndjson_pipeline zip, printed by `python -m tools.deploy`."
  type        = string
  default     = "glue/python/placeholder/ndjson_pipeline.zip"
}

variable "glue_job_py_files_key" {
  description = "Assets-bucket key of the job's own ndjson_job zip, printed by `python -m tools.deploy`."
  type        = string
  default     = "glue/python/placeholder/ndjson_job.zip"
}

variable "glue_timeout_minutes" {
  description = "A run longer than this ends in TIMEOUT (and alerts)."
  type        = number
  default     = 60
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "alert_emails" {
  type    = list(string)
  default = []
}

variable "queue_age_threshold_seconds" {
  description = "Alarm when the oldest S3 event has waited this long in the queue."
  type        = number
  default     = 900
}

variable "pending_age_threshold_seconds" {
  description = "Alarm when a file has been PENDING this long (see docs/deployment.md for sizing)."
  type        = number
  default     = 1800
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets without a route to the internet (at least two, in different availability zones) for the endpoints and MWAA; the Glue job runs in the first."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two private subnets in different availability zones (MWAA's requirement)."
  }
}

variable "route_table_ids" {
  description = "Route tables of the private subnets (gateway endpoints for S3 and DynamoDB)."
  type        = list(string)
}

variable "existing_vpc_endpoint_ids" {
  description = "VPC endpoints a platform team already provides in this VPC, by service (a key of required_endpoints in infra/modules/network, such as \"s3\" or \"ecr.api\") -> vpce id. Every other required service gets an endpoint here."
  type        = map(string)
  default     = {}
}

variable "deployer_role_arn" {
  description = "ARN of the role that runs Terraform and tools.deploy (from outside the VPC): the bucket policies exempt it from the VPC-endpoint rule. Not the ARN of an assumed-role session."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+", var.deployer_role_arn))
    error_message = "deployer_role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)."
  }
}

variable "landing_writer_role_arns" {
  description = "Producer roles that write landing files from outside this VPC: outside the S3 endpoint they may only write. Producers inside the VPC need no entry."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.landing_writer_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+", arn))])
    error_message = "landing_writer_role_arns must hold IAM role ARNs."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary (IAM policy ARN) the organisation requires on roles; set on both roles. null for none."
  type        = string
  default     = null
}

variable "create_mwaa_environment" {
  description = "Declare the MWAA environment here; false when a platform team owns it and only needs the execution role."
  type        = bool
  default     = false
}

variable "mwaa_environment_name" {
  description = "Defaults to name_prefix. The execution role is scoped to this environment's log groups and metrics."
  type        = string
  default     = null
}

variable "mwaa_airflow_version" {
  type    = string
  default = "3.3.1"
}

variable "mwaa_environment_class" {
  type    = string
  default = "mw1.small"
}

variable "mwaa_min_workers" {
  type    = number
  default = 1
}

variable "mwaa_max_workers" {
  type    = number
  default = 4
}

variable "mwaa_plugins_s3_object_version" {
  description = "Version id of plugins/plugins.zip, printed by tools.deploy."
  type        = string
  default     = null
}

variable "mwaa_requirements_s3_object_version" {
  description = "Version id of requirements/requirements.txt, printed by tools.deploy."
  type        = string
  default     = null
}

variable "mwaa_airflow_configuration_options" {
  type    = map(string)
  default = {}
}

variable "manage_catalog_encryption" {
  description = "Set this account's Glue Data Catalog encryption (region-wide) to the pipeline's data key; false where another stack owns that setting."
  type        = bool
  default     = true
}
