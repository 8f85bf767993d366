output "bucket_arns" {
  description = "Bucket ARNs keyed by role."
  value       = { for role, bucket in aws_s3_bucket.this : role => bucket.arn }
}

output "bucket_ids" {
  description = "Bucket names keyed by role."
  value       = { for role, bucket in aws_s3_bucket.this : role => bucket.id }
}
