output "mwaa_execution_role_arn" {
  value = aws_iam_role.mwaa.arn
}

output "glue_role_arn" {
  value = aws_iam_role.glue.arn
}

output "glue_role_name" {
  value = aws_iam_role.glue.name
}
