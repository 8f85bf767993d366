# Plan-time behaviour of the endpoint checks, on a mocked AWS provider (no account, no network):
# every required service gets an endpoint, named ones are used instead of created, and a named
# endpoint that cannot serve its service fails the plan. Run by tools/iac_checks.sh when a
# provider mirror is available (TF_PLUGIN_DIR).

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.20.0.0/16" }
  }
}

variables {
  name_prefix     = "acme-ndjson-prod"
  vpc_id          = "vpc-0123456789abcdef0"
  subnet_ids      = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  route_table_ids = ["rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"]
}

run "creates_an_endpoint_for_every_required_service" {
  command = plan

  assert {
    condition     = length(output.endpoint_ids) == length(local.required_endpoints)
    error_message = "Every required service needs an endpoint."
  }
  assert {
    condition     = toset(keys(aws_vpc_endpoint.gateway)) == toset(["s3", "dynamodb"])
    error_message = "S3 and DynamoDB get gateway endpoints."
  }
  assert {
    condition     = length(aws_vpc_endpoint.interface) == length(local.required_endpoints) - 2
    error_message = "Every other service gets an interface endpoint."
  }
}

run "uses_a_named_endpoint_instead_of_creating_one" {
  command = plan

  variables {
    existing_endpoint_ids = { s3 = "vpce-0s3shared000000000" }
  }
  override_data {
    target = data.aws_vpc_endpoint.existing
    values = {
      id                  = "vpce-0s3shared000000000"
      vpc_id              = "vpc-0123456789abcdef0"
      state               = "available"
      service_name        = "com.amazonaws.eu-west-1.s3"
      vpc_endpoint_type   = "Gateway"
      route_table_ids     = ["rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"]
      prefix_list_id      = "pl-6da54004"
      private_dns_enabled = false
      security_group_ids  = []
    }
  }

  assert {
    condition     = output.endpoint_ids["s3"] == "vpce-0s3shared000000000"
    error_message = "The named S3 endpoint is the one the buckets allow."
  }
  assert {
    condition     = !contains(keys(aws_vpc_endpoint.gateway), "s3") && length(output.endpoint_ids) == length(local.required_endpoints)
    error_message = "A named service is not created again, and no other goes missing."
  }
  assert {
    condition     = output.gateway_prefix_list_ids["s3"] == "pl-6da54004"
    error_message = "Security groups allow HTTPS to the named endpoint's prefix list."
  }
}

run "refuses_a_service_the_pipeline_does_not_need" {
  command = plan

  variables {
    existing_endpoint_ids = { s4 = "vpce-0typo000000000000" }
  }
  expect_failures = [data.aws_vpc_endpoint.existing]
}

run "refuses_an_endpoint_of_another_service" {
  command = plan

  variables {
    existing_endpoint_ids = { sqs = "vpce-0s3shared000000000" }
  }
  override_data {
    target = data.aws_vpc_endpoint.existing
    values = {
      vpc_id              = "vpc-0123456789abcdef0"
      state               = "available"
      service_name        = "com.amazonaws.eu-west-1.s3"
      vpc_endpoint_type   = "Gateway"
      route_table_ids     = ["rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"]
      private_dns_enabled = false
    }
  }
  expect_failures = [data.aws_vpc_endpoint.existing]
}

run "refuses_a_gateway_endpoint_missing_from_a_route_table" {
  command = plan

  variables {
    existing_endpoint_ids = { dynamodb = "vpce-0ddbshared00000000" }
  }
  override_data {
    target = data.aws_vpc_endpoint.existing
    values = {
      vpc_id              = "vpc-0123456789abcdef0"
      state               = "available"
      service_name        = "com.amazonaws.eu-west-1.dynamodb"
      vpc_endpoint_type   = "Gateway"
      route_table_ids     = ["rtb-0aaaaaaaaaaaaaaaa"]
      private_dns_enabled = false
    }
  }
  expect_failures = [data.aws_vpc_endpoint.existing]
}

run "refuses_an_interface_endpoint_without_private_dns" {
  command = plan

  variables {
    existing_endpoint_ids = { logs = "vpce-0logsshared0000000" }
  }
  override_data {
    target = data.aws_vpc_endpoint.existing
    values = {
      vpc_id              = "vpc-0123456789abcdef0"
      state               = "available"
      service_name        = "com.amazonaws.eu-west-1.logs"
      vpc_endpoint_type   = "Interface"
      route_table_ids     = []
      private_dns_enabled = false
    }
  }
  expect_failures = [data.aws_vpc_endpoint.existing]
}
