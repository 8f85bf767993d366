variable "table_name" {
  type = string
}

variable "spec" {
  description = "The ledger section of resources.json."
  type = object({
    partition_key = string
    sort_key      = string
    ttl_attribute = string
    work_index = object({
      name                 = string
      partition_key        = string
      sort_key             = string
      projected_attributes = list(string)
    })
  })
}

variable "kms_key_arn" {
  type = string
}
