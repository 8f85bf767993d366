output "job_name" {
  value = aws_glue_job.this.name
}

output "job_arn" {
  value = aws_glue_job.this.arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.job.name
}

output "security_group_id" {
  value = aws_security_group.job.id
}

output "connection_name" {
  value = aws_glue_connection.vpc.name
}
