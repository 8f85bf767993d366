output "database_name" {
  value = aws_glue_catalog_database.this.name
}

output "table_name" {
  value = one(concat(aws_glue_catalog_table.dataset[*].name, aws_glue_catalog_table.iceberg[*].name))
}

output "database_arn" {
  value = aws_glue_catalog_database.this.arn
}

output "table_arn" {
  value = one(concat(aws_glue_catalog_table.dataset[*].arn, aws_glue_catalog_table.iceberg[*].arn))
}

output "table_optimizer_role_arn" {
  description = "The role Glue's table optimizers run as (iceberg only)."
  value       = one(aws_iam_role.optimizer[*].arn)
}
