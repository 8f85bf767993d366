output "table_arn" {
  value = aws_dynamodb_table.ledger.arn
}

output "work_index_arn" {
  description = "ARN of the work index (IAM scopes Query to it by name)."
  value       = "${aws_dynamodb_table.ledger.arn}/index/${var.spec.work_index.name}"
}

output "table_name" {
  value = aws_dynamodb_table.ledger.name
}
