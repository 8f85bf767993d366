# Private access to every AWS API the pipeline and MWAA call. The VPC has no route to the
# internet (no NAT gateway, no internet gateway, no security-group rule beyond the VPC), so
# each service reached from it needs an endpoint: created here, or one a platform team already
# runs in this VPC, named in var.existing_endpoint_ids. Which API goes through which endpoint,
# and which role and statement allow it: docs/deployment.md.

data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  # Endpoint service (com.amazonaws.<region>.<key>) -> endpoint type. S3 and DynamoDB have free
  # gateway endpoints (routes on the subnets' route tables); the rest are interface endpoints.
  required_endpoints = {
    s3            = "Gateway"   # the four buckets (MWAA's source bucket too), from MWAA and the Glue job
    dynamodb      = "Gateway"   # the ledger
    glue          = "Interface" # job runs and catalog partitions from MWAA; the Glue job's own runtime
    sqs           = "Interface" # the event queue; MWAA's Celery queues
    sns           = "Interface" # alerts from the DAGs
    monitoring    = "Interface" # PutMetricData: the pipeline's metrics, Glue's job metrics, MWAA's
    logs          = "Interface" # MWAA's and the Glue job's logs
    kms           = "Interface" # the Glue job's bookmark key (client-side), MWAA's environment key
    sts           = "Interface" # regional STS for the SDKs' role credentials (a connection with role_arn)
    "ecr.api"     = "Interface" # MWAA: AWS lists ECR among the endpoints of a private-routing VPC
    "ecr.dkr"     = "Interface" # MWAA: image layers (the layers themselves come through the S3 endpoint)
    "airflow.api" = "Interface" # MWAA: the environment API
    "airflow.env" = "Interface" # MWAA: the Airflow environment (CLI and web login tokens)
    "airflow.ops" = "Interface" # MWAA: operations of the environment's components
  }

  # Every required service not named as existing gets an endpoint here.
  created = {
    for service, type in local.required_endpoints : service => type
    if !contains(keys(var.existing_endpoint_ids), service)
  }

  endpoint_ids = merge(
    { for service, endpoint in aws_vpc_endpoint.gateway : service => endpoint.id },
    { for service, endpoint in aws_vpc_endpoint.interface : service => endpoint.id },
    { for service, endpoint in data.aws_vpc_endpoint.existing : service => endpoint.id },
  )
}

# Endpoints a platform team runs in this VPC: each must be the service it is named for, in this
# VPC, usable (available; on every route table of the private subnets for a gateway endpoint;
# with private DNS for an interface endpoint, so the SDKs' default hostnames resolve to it).
data "aws_vpc_endpoint" "existing" {
  for_each = var.existing_endpoint_ids

  id = each.value

  lifecycle {
    precondition {
      condition     = contains(keys(local.required_endpoints), each.key)
      error_message = "existing_endpoint_ids names \"${each.key}\", which is not a service the pipeline needs; services: ${join(", ", keys(local.required_endpoints))}."
    }
    postcondition {
      condition     = self.vpc_id == var.vpc_id && self.state == "available"
      error_message = "Endpoint ${each.value} (${each.key}) must be available in ${var.vpc_id}."
    }
    postcondition {
      condition     = self.service_name == "com.amazonaws.${data.aws_region.current.name}.${each.key}" && self.vpc_endpoint_type == local.required_endpoints[each.key]
      error_message = "Endpoint ${each.value} must be an endpoint of com.amazonaws.${data.aws_region.current.name}.${each.key} of type ${local.required_endpoints[each.key]}."
    }
    postcondition {
      condition     = self.vpc_endpoint_type == "Gateway" ? length(setsubtract(var.route_table_ids, self.route_table_ids)) == 0 : self.private_dns_enabled
      error_message = "Endpoint ${each.value} (${each.key}): a gateway endpoint must be on every route table in route_table_ids, an interface endpoint must have private DNS enabled."
    }
  }
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name_prefix}-vpc-endpoints"
  description = "HTTPS from inside the VPC to the interface endpoints"
  vpc_id      = var.vpc_id

  # The whole VPC, not only this package's groups: a platform-run MWAA environment in the same
  # VPC uses these endpoints with security groups this configuration does not know.
  ingress {
    description = "HTTPS from the VPC"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.this.cidr_block]
  }

  # An endpoint only answers, and a security group lets the replies of allowed traffic out
  # (it is stateful): no egress at all. Written out so Terraform removes any earlier rule.
  egress = []
}

resource "aws_vpc_endpoint" "gateway" {
  for_each = { for service, type in local.created : service => type if type == "Gateway" }

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type = each.value
  route_table_ids   = var.route_table_ids
}

resource "aws_vpc_endpoint" "interface" {
  for_each = { for service, type in local.created : service => type if type == "Interface" }

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type   = each.value
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
}
