# Two roles: the MWAA execution role (every DAG task runs with it) and the Glue job
# role. Their permissions are JSON templates in infra/policies/, rendered here with
# the deployment's ARNs and by tools/iam_policies.py with the local stack's, so the
# tests run the pipeline under exactly the policies deployed. The few "*" are
# AWS-mandated and allow-listed with their reason in tests/infra/test_iam_wildcards.py.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  glue_role = "${var.name_prefix}-glue-job"

  # Every placeholder of the templates; tests/infra checks both renderers fill the same set.
  policy_vars = {
    partition                        = data.aws_partition.current.partition
    region                           = data.aws_region.current.name
    account                          = data.aws_caller_identity.current.account_id
    mwaa_environment_name            = var.mwaa_environment_name
    landing_bucket_arn               = var.bucket_arns["landing"]
    lake_bucket_arn                  = var.bucket_arns["lake"]
    quarantine_bucket_arn            = var.bucket_arns["quarantine"]
    assets_bucket_arn                = var.bucket_arns["assets"]
    landing_prefix                   = var.landing_prefix
    dataset                          = var.dataset
    queue_arn                        = var.queue_arn
    queue_kms_key_arn                = var.queue_kms_key_arn
    data_kms_key_arn                 = var.data_kms_key_arn
    ledger_table_arn                 = var.ledger_table_arn
    ledger_work_index_arn            = var.ledger_work_index_arn
    glue_job_arn                     = var.glue_job_arn
    catalog_database                 = var.catalog_database
    glue_log_group_name              = var.glue_log_group_name
    glue_security_configuration_name = var.glue_security_configuration_name
    glue_role_name                   = local.glue_role
    glue_connection_name             = var.glue_connection_name
    glue_subnet_id                   = var.glue_subnet_id
    glue_security_group_id           = var.glue_security_group_id
    alerts_topic_arn                 = var.alerts_topic_arn
    alerts_kms_key_arn               = var.alerts_kms_key_arn
    metric_namespace                 = var.metric_namespace
  }
}

# ---------------------------------------------------------------- MWAA execution role

data "aws_iam_policy_document" "mwaa_trust" {
  statement {
    sid     = "MwaaAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "mwaa" {
  name                 = "${var.name_prefix}-mwaa-execution"
  assume_role_policy   = data.aws_iam_policy_document.mwaa_trust.json
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "mwaa" {
  name   = "pipeline"
  role   = aws_iam_role.mwaa.id
  policy = templatefile("${path.module}/../../policies/mwaa-execution.json.tftpl", local.policy_vars)
}

# ------------------------------------------------------------------- Glue job role

data "aws_iam_policy_document" "glue_trust" {
  statement {
    sid     = "GlueAssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "glue" {
  name                 = local.glue_role
  assume_role_policy   = data.aws_iam_policy_document.glue_trust.json
  permissions_boundary = var.permissions_boundary_arn
}

resource "aws_iam_role_policy" "glue" {
  name   = "pipeline"
  role   = aws_iam_role.glue.id
  policy = templatefile("${path.module}/../../policies/glue-job.json.tftpl", local.policy_vars)
}
