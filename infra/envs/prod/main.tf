# Production wiring of the pipeline. Every name and shape comes from resources.json,
# the file the local bootstrap (tools/local_stack.py) reads too, so they cannot drift;
# tests/infra checks that both declare the same resources.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  spec = jsondecode(file("${path.module}/../../../include/ndjson_pipeline/resources.json"))

  names = {
    landing    = "${var.name_prefix}-${local.spec.buckets.landing}"
    lake       = "${var.name_prefix}-${local.spec.buckets.lake}"
    quarantine = "${var.name_prefix}-${local.spec.buckets.quarantine}"
    assets     = "${var.name_prefix}-${local.spec.buckets.assets}"
    queue      = "${var.name_prefix}-${local.spec.queue.name}"
    dlq        = "${var.name_prefix}-${local.spec.queue.dlq_name}"
    ledger     = "${var.name_prefix}-${local.spec.ledger.table}"
    glue_job   = "${var.name_prefix}-${local.spec.glue_job.name}"
    # Glue database names are read unquoted by Athena and Spark SQL only when they hold no "-".
    catalog_database = "${replace(var.name_prefix, "-", "_")}_${local.spec.catalog.database}"
  }

  # Built from names (not module outputs) so the roles and the resources they guard
  # do not depend on each other.
  glue_job_arn          = "arn:${data.aws_partition.current.partition}:glue:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:job/${local.names.glue_job}"
  glue_log_group_name   = "/aws-glue/jobs/${local.names.glue_job}"
  mwaa_environment_name = coalesce(var.mwaa_environment_name, var.name_prefix)
  metric_namespace      = "NdjsonPipeline"
  # Glue's NETWORK connection takes one subnet: the job's workers run in the first private subnet.
  glue_subnet_id = var.subnet_ids[0]
}

# One key for the data at rest: buckets, ledger, Glue output/bookmarks/logs, MWAA.
module "data_key" {
  source      = "../../modules/kms_key"
  name        = "${var.name_prefix}-data"
  description = "Data at rest of the ${var.name_prefix} pipeline"
  service_grants = [{
    sid     = "CloudWatchLogs"
    service = "logs.${data.aws_region.current.name}.amazonaws.com"
    actions = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"]
    conditions = [{
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }]
  }]
}

module "storage" {
  source = "../../modules/storage"
  bucket_names = {
    landing    = local.names.landing
    lake       = local.names.lake
    quarantine = local.names.quarantine
    assets     = local.names.assets
  }
  kms_key_arn                       = module.data_key.arn
  s3_vpc_endpoint_id                = module.network.endpoint_ids["s3"]
  deployer_role_arn                 = var.deployer_role_arn
  mwaa_execution_role_arn           = module.iam.mwaa_execution_role_arn
  landing_writer_role_arns          = var.landing_writer_role_arns
  pipeline_retention_days           = var.pipeline_retention_days
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  # In resources.json, not variables: the settings check the ledger's TTL and the day report prices storage with them.
  landing_retention_days                    = local.spec.landing_retention.days
  landing_noncurrent_version_retention_days = local.spec.landing_retention.noncurrent_days
}

module "queue" {
  source             = "../../modules/queue"
  queue_name         = local.names.queue
  dlq_name           = local.names.dlq
  spec               = local.spec.queue
  landing_bucket_id  = module.storage.bucket_ids["landing"]
  landing_bucket_arn = module.storage.bucket_arns["landing"]
  landing_prefix     = local.spec.landing_prefix
}

module "ledger" {
  source      = "../../modules/ledger"
  table_name  = local.names.ledger
  spec        = local.spec.ledger
  kms_key_arn = module.data_key.arn
}

module "glue" {
  source        = "../../modules/glue"
  job_name      = local.names.glue_job
  spec          = local.spec.glue_job
  role_arn      = module.iam.glue_role_arn
  kms_key_arn   = module.data_key.arn
  script_s3_uri = "s3://${local.names.assets}/${var.glue_script_key}"
  extra_py_files_s3_uris = [
    "s3://${local.names.assets}/${var.glue_extra_py_files_key}",
    "s3://${local.names.assets}/${var.glue_job_py_files_key}",
  ]
  timeout_minutes             = var.glue_timeout_minutes
  log_retention_days          = var.log_retention_days
  subnet_id                   = local.glue_subnet_id
  endpoint_security_group_ids = module.network.endpoint_security_group_ids
  s3_prefix_list_id           = module.network.gateway_prefix_list_ids["s3"]
}

module "catalog" {
  source                     = "../../modules/catalog"
  name_prefix                = var.name_prefix
  database_name              = local.names.catalog_database
  dataset                    = var.dataset
  lake_bucket                = local.names.lake
  kms_key_arn                = module.data_key.arn
  manage_catalog_encryption  = var.manage_catalog_encryption
  table_format               = var.table_format
  snapshot_retention_days    = var.snapshot_retention_days
  orphan_file_retention_days = var.orphan_file_retention_days
  permissions_boundary_arn   = var.permissions_boundary_arn
}

module "monitoring" {
  source                        = "../../modules/monitoring"
  name_prefix                   = var.name_prefix
  metric_namespace              = local.metric_namespace
  dataset                       = var.dataset
  queue_name                    = local.names.queue
  dlq_name                      = local.names.dlq
  dlq_max_receive_count         = local.spec.queue.dlq_max_receive_count
  glue_job_name                 = local.names.glue_job
  ledger_table_name             = local.names.ledger
  ledger_index_name             = local.spec.ledger.work_index.name
  mwaa_environment_name         = local.mwaa_environment_name
  queue_age_threshold_seconds   = var.queue_age_threshold_seconds
  pending_age_threshold_seconds = var.pending_age_threshold_seconds
  alert_emails                  = var.alert_emails
}

module "iam" {
  source                           = "../../modules/iam"
  name_prefix                      = var.name_prefix
  mwaa_environment_name            = local.mwaa_environment_name
  bucket_arns                      = module.storage.bucket_arns
  landing_prefix                   = local.spec.landing_prefix
  dataset                          = var.dataset
  queue_arn                        = module.queue.queue_arn
  queue_kms_key_arn                = module.queue.kms_key_arn
  data_kms_key_arn                 = module.data_key.arn
  ledger_table_arn                 = module.ledger.table_arn
  ledger_work_index_arn            = module.ledger.work_index_arn
  glue_job_arn                     = local.glue_job_arn
  catalog_database                 = local.names.catalog_database
  glue_log_group_name              = local.glue_log_group_name
  glue_security_configuration_name = local.names.glue_job
  alerts_topic_arn                 = module.monitoring.topic_arn
  alerts_kms_key_arn               = module.monitoring.kms_key_arn
  metric_namespace                 = local.metric_namespace
  glue_connection_name             = module.glue.connection_name
  glue_subnet_id                   = local.glue_subnet_id
  glue_security_group_id           = module.glue.security_group_id
  permissions_boundary_arn         = var.permissions_boundary_arn
}

# Every AWS API the pipeline and MWAA call has an endpoint in the VPC: created there, or named in
# existing_vpc_endpoint_ids; the plan fails when a required service has neither.
module "network" {
  source                = "../../modules/network"
  name_prefix           = var.name_prefix
  vpc_id                = var.vpc_id
  subnet_ids            = var.subnet_ids
  route_table_ids       = var.route_table_ids
  existing_endpoint_ids = var.existing_vpc_endpoint_ids
}

# The endpoints were optional (count) before; they are always declared now.
moved {
  from = module.network[0]
  to   = module.network
}

module "mwaa" {
  source                         = "../../modules/mwaa"
  count                          = var.create_mwaa_environment ? 1 : 0
  environment_name               = local.mwaa_environment_name
  airflow_version                = var.mwaa_airflow_version
  environment_class              = var.mwaa_environment_class
  min_workers                    = var.mwaa_min_workers
  max_workers                    = var.mwaa_max_workers
  execution_role_arn             = module.iam.mwaa_execution_role_arn
  kms_key_arn                    = module.data_key.arn
  source_bucket_arn              = module.storage.bucket_arns["assets"]
  plugins_s3_object_version      = var.mwaa_plugins_s3_object_version
  requirements_s3_object_version = var.mwaa_requirements_s3_object_version
  vpc_id                         = var.vpc_id
  subnet_ids                     = slice(var.subnet_ids, 0, 2)
  endpoint_security_group_ids    = module.network.endpoint_security_group_ids
  gateway_prefix_list_ids        = module.network.gateway_prefix_list_ids
  airflow_configuration_options  = var.mwaa_airflow_configuration_options
}
