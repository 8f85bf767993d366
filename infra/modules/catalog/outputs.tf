output "database_name" {
  value = aws_glue_catalog_database.this.name
}

output "table_name" {
  value = aws_glue_catalog_table.dataset.name
}

output "database_arn" {
  value = aws_glue_catalog_database.this.arn
}

output "table_arn" {
  value = aws_glue_catalog_table.dataset.arn
}
