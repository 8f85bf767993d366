output "vpc_cidr" {
  value = data.aws_vpc.this.cidr_block
}

output "endpoint_ids" {
  description = "Endpoint id by service (the keys of local.required_endpoints): created here or named in existing_endpoint_ids."
  value       = local.endpoint_ids

  # Fails the plan when a required service would end up with neither: no AWS call may depend on a
  # route this VPC does not have.
  precondition {
    condition     = length(setsubtract(keys(local.required_endpoints), keys(local.endpoint_ids))) == 0
    error_message = "No VPC endpoint, created or named, for: ${join(", ", setsubtract(keys(local.required_endpoints), keys(local.endpoint_ids)))}."
  }
}

output "endpoint_security_group_ids" {
  description = "Security groups of the interface endpoints (this module's and those of named endpoints): where HTTPS to an AWS API goes."
  value = distinct(concat(
    [aws_security_group.endpoints.id],
    flatten([for endpoint in data.aws_vpc_endpoint.existing : endpoint.security_group_ids if endpoint.vpc_endpoint_type == "Interface"]),
  ))
}

output "gateway_prefix_list_ids" {
  description = "Prefix list of each gateway endpoint's service (s3, dynamodb): security groups allow HTTPS to these."
  value = merge(
    { for service, endpoint in aws_vpc_endpoint.gateway : service => endpoint.prefix_list_id },
    { for service, endpoint in data.aws_vpc_endpoint.existing : service => endpoint.prefix_list_id if endpoint.vpc_endpoint_type == "Gateway" },
  )
}
