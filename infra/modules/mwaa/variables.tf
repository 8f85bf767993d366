variable "environment_name" {
  type = string
}

variable "airflow_version" {
  type = string
}

variable "environment_class" {
  type = string
}

variable "min_workers" {
  type = number
}

variable "max_workers" {
  type = number
}

variable "execution_role_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "source_bucket_arn" {
  type = string
}

variable "plugins_s3_object_version" {
  description = "S3 version id of plugins/plugins.zip (printed by tools.deploy)."
  type        = string
}

variable "requirements_s3_object_version" {
  description = "S3 version id of requirements/requirements.txt (printed by tools.deploy)."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Two private subnets in different availability zones (MWAA requirement)."
  type        = list(string)
}

variable "airflow_configuration_options" {
  type = map(string)
}

variable "endpoint_security_group_ids" {
  description = "Security groups of the VPC's interface endpoints: where the environment's HTTPS to AWS APIs goes."
  type        = list(string)
}

variable "gateway_prefix_list_ids" {
  description = "Prefix lists of the S3 and DynamoDB gateway endpoints' services, by service."
  type        = map(string)
}
