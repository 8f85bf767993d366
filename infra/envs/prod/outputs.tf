output "bucket_names" {
  value = module.storage.bucket_ids
}

output "queue_url" {
  value = module.queue.queue_url
}

output "ledger_table" {
  value = module.ledger.table_name
}

output "glue_job_name" {
  value = module.glue.job_name
}

output "mwaa_execution_role_arn" {
  value = module.iam.mwaa_execution_role_arn
}

output "data_kms_key_arn" {
  description = "Producers writing to the landing bucket need kms:GenerateDataKey on this key."
  value       = module.data_key.arn
}

output "alerts_topic_arn" {
  value = module.monitoring.topic_arn
}

output "mwaa_webserver_url" {
  value = try(module.mwaa[0].webserver_url, null)
}

output "vpc_endpoint_ids" {
  description = "The VPC endpoint of each AWS service the pipeline and MWAA call (created or named)."
  value       = module.network.endpoint_ids
}
