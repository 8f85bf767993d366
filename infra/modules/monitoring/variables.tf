variable "name_prefix" {
  type = string
}

variable "metric_namespace" {
  description = "Namespace of the metrics the DAG publishes."
  type        = string
}

variable "dataset" {
  description = "The DAG publishes its metrics with the dimension Dataset=<dataset>."
  type        = string
}

variable "queue_name" {
  type = string
}

variable "dlq_name" {
  type = string
}

variable "dlq_max_receive_count" {
  type = number
}

variable "glue_job_name" {
  type = string
}

variable "queue_age_threshold_seconds" {
  type = number
}

variable "pending_age_threshold_seconds" {
  type = number
}

variable "alert_emails" {
  description = "Addresses subscribed to the alerts topic (each must confirm)."
  type        = list(string)
}

variable "ledger_table_name" {
  type = string
}

variable "ledger_index_name" {
  description = "The ledger's work index (its throttling is alarmed with the table's)."
  type        = string
}

variable "mwaa_environment_name" {
  description = "The environment whose scheduler heartbeat is alarmed (created here or by a platform team)."
  type        = string
}
