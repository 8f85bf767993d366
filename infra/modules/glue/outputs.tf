output "job_name" {
  value = aws_glue_job.this.name
}

output "job_arn" {
  value = aws_glue_job.this.arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.job.name
}
