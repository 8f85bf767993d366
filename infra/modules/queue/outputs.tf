output "queue_arn" {
  value = aws_sqs_queue.events.arn
}

output "queue_url" {
  value = aws_sqs_queue.events.id
}

output "dlq_arn" {
  value = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  value = aws_sqs_queue.dlq.name
}

output "queue_name" {
  value = aws_sqs_queue.events.name
}

output "kms_key_arn" {
  value = module.key.arn
}
