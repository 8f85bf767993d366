output "vpc_cidr" {
  value = data.aws_vpc.this.cidr_block
}

output "endpoint_security_group_id" {
  value = aws_security_group.endpoints.id
}
