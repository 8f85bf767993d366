variable "name" {
  description = "Alias name (without the alias/ prefix)."
  type        = string
}

variable "description" {
  type = string
}

variable "service_grants" {
  description = "Key-policy statements for AWS service principals that must use the key."
  type = list(object({
    sid     = string
    service = string
    actions = list(string)
    conditions = list(object({
      test     = string
      variable = string
      values   = list(string)
    }))
  }))
  default = []
}
