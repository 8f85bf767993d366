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

variable "existing_endpoint_ids" {
  description = "Endpoints a platform team already runs in this VPC, by service (a key of local.required_endpoints in main.tf, such as \"s3\" or \"ecr.api\") -> vpce id. Every other required service gets an endpoint here."
  type        = map(string)
  default     = {}
}
