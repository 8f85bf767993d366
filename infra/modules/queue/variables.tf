variable "queue_name" {
  type = string
}

variable "dlq_name" {
  type = string
}

variable "spec" {
  description = "The queue section of resources.json."
  type = object({
    visibility_timeout_seconds = number
    message_retention_seconds  = number
    receive_wait_time_seconds  = number
    dlq_max_receive_count      = number
  })
}

variable "landing_bucket_id" {
  type = string
}

variable "landing_bucket_arn" {
  type = string
}

variable "landing_prefix" {
  description = "Only objects under this prefix are announced (resources.json landing_prefix)."
  type        = string
}
