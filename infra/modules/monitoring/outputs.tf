output "topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "kms_key_arn" {
  value = module.key.arn
}
