variable "name_prefix" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets for the interface endpoints (one per availability zone)."
  type        = list(string)
}

variable "route_table_ids" {
  description = "Route tables of those subnets, for the S3 and DynamoDB gateway endpoints."
  type        = list(string)
}
