# Two roles: the MWAA execution role (every DAG task runs with it) and the Glue job
# role. Each statement names its ARNs; the few "*" that remain are AWS-mandated and
# allow-listed with their reason in tests/infra/test_iam_wildcards.py.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  logs_arn  = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group"
  landing   = var.bucket_arns["landing"]
  lake      = var.bucket_arns["lake"]
  assets    = var.bucket_arns["assets"]
  glue_role = "${var.name_prefix}-glue-job"
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
      values   = [local.account]
    }
  }
}

data "aws_iam_policy_document" "mwaa" {
  statement {
    sid       = "AirflowPublishMetrics"
    actions   = ["airflow:PublishMetrics"]
    resources = ["arn:${local.partition}:airflow:${local.region}:${local.account}:environment/${var.mwaa_environment_name}"]
  }

  # MWAA reads its DAGs, plugins.zip and requirements.txt from the assets bucket.
  statement {
    sid = "MwaaSourceBucket"
    actions = [
      "s3:ListBucket",
      "s3:GetBucketLocation",
      "s3:GetBucketVersioning",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetEncryptionConfiguration",
    ]
    resources = [local.assets]
  }

  statement {
    sid       = "MwaaSourceObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.assets}/dags/*", "${local.assets}/plugins/*", "${local.assets}/requirements/*", "${local.assets}/glue/*"]
  }

  # MWAA refuses a source bucket that could be public and checks the account-level
  # block too; this action has no resource-level permissions (AWS-mandated "*").
  statement {
    sid       = "MwaaAccountPublicAccessBlock"
    actions   = ["s3:GetAccountPublicAccessBlock"]
    resources = ["*"]
  }

  # MWAA names its log groups airflow-<environment>-<component> (AWS-documented).
  statement {
    sid = "MwaaLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:CreateLogGroup",
      "logs:PutLogEvents",
      "logs:GetLogEvents",
      "logs:GetLogRecord",
      "logs:GetLogGroupFields",
      "logs:GetQueryResults",
    ]
    resources = ["${local.logs_arn}:airflow-${var.mwaa_environment_name}-*"]
  }

  # DescribeLogGroups has no resource-level permissions; MWAA calls it at start-up.
  statement {
    sid       = "MwaaDescribeLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }

  # AWS requirement: MWAA's Celery queues live in an AWS-owned account whose id is
  # not known in advance, hence the account wildcard. The one allowed wildcard ARN.
  statement {
    sid = "MwaaCeleryQueues"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
    ]
    resources = ["arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*"]
  }

  # PutMetricData has no resource-level permissions: the namespace condition is the scope.
  statement {
    sid       = "PutPipelineMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metric_namespace, "AmazonMWAA"]
    }
  }

  statement {
    sid       = "DataKeyViaServices"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.data_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com", "sqs.${local.region}.amazonaws.com", "dynamodb.${local.region}.amazonaws.com", "logs.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "EventQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [var.queue_arn]
  }

  statement {
    sid       = "EventQueueKey"
    actions   = ["kms:Decrypt"]
    resources = [var.queue_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }

  # TransactWriteItems and ConditionCheck are authorised per item as PutItem,
  # UpdateItem and ConditionCheckItem; Query runs on the table and the work index.
  statement {
    sid = "Ledger"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:Query",
      "dynamodb:BatchGetItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
    ]
    resources = [var.ledger_table_arn]
  }

  statement {
    sid       = "LedgerWorkIndex"
    actions   = ["dynamodb:Query"]
    resources = [var.ledger_work_index_arn]
  }

  statement {
    sid       = "LandingList"
    actions   = ["s3:ListBucket"]
    resources = [local.landing]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.landing_prefix}*"]
    }
  }

  statement {
    sid       = "LandingRead"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.landing}/${var.landing_prefix}*"]
  }

  statement {
    sid       = "LakeList"
    actions   = ["s3:ListBucket"]
    resources = [local.lake]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["_pipeline/*", "${var.dataset}/*"]
    }
  }

  # Manifests, job results and reports.
  statement {
    sid       = "LakePipelineObjects"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.lake}/_pipeline/*"]
  }

  statement {
    sid       = "LakeDatasetRead"
    actions   = ["s3:GetObject"]
    resources = ["${local.lake}/${var.dataset}/*"]
  }

  statement {
    sid       = "QuarantineBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arns["quarantine"]]
  }

  statement {
    sid       = "QuarantineRead"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arns["quarantine"]}/*"]
  }

  statement {
    sid       = "GlueJobRuns"
    actions   = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun", "glue:GetJob"]
    resources = [var.glue_job_arn]
  }

  statement {
    sid       = "Alerts"
    actions   = ["sns:Publish"]
    resources = [var.alerts_topic_arn]
  }

  statement {
    sid       = "AlertsKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.alerts_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sns.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "mwaa" {
  name               = "${var.name_prefix}-mwaa-execution"
  assume_role_policy = data.aws_iam_policy_document.mwaa_trust.json
}

resource "aws_iam_role_policy" "mwaa" {
  name   = "pipeline"
  role   = aws_iam_role.mwaa.id
  policy = data.aws_iam_policy_document.mwaa.json
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
      values   = [local.account]
    }
  }
}

data "aws_iam_policy_document" "glue" {
  statement {
    sid       = "GlueCode"
    actions   = ["s3:GetObject"]
    resources = ["${local.assets}/glue/*"]
  }

  statement {
    sid       = "ManifestRead"
    actions   = ["s3:GetObject"]
    resources = ["${local.lake}/_pipeline/manifests/*"]
  }

  statement {
    sid       = "ResultWrite"
    actions   = ["s3:PutObject"]
    resources = ["${local.lake}/_pipeline/results/*"]
  }

  statement {
    sid       = "LakeList"
    actions   = ["s3:ListBucket"]
    resources = [local.lake]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.dataset}/*"]
    }
  }

  # Parquet output, including <dataset>/_staging/ which the job writes then moves.
  statement {
    sid       = "DatasetWrite"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.lake}/${var.dataset}/*"]
  }

  # HeadObject is authorised as GetObject; manifests pin versions, hence GetObjectVersion.
  statement {
    sid       = "LandingRead"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.landing}/${var.landing_prefix}*"]
  }

  statement {
    sid       = "QuarantineWrite"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arns["quarantine"]}/*"]
  }

  # Job bookmarks use client-side encryption, so the role calls KMS directly.
  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.data_kms_key_arn]
  }

  # Log stream names are generated per run; each ARN names one log group.
  statement {
    sid     = "JobLogs"
    actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"]
    resources = [
      "${local.logs_arn}:${var.glue_log_group_name}:*",
      "${local.logs_arn}:/aws-glue/jobs/${var.glue_security_configuration_name}-role/${local.glue_role}/output:*",
      "${local.logs_arn}:/aws-glue/jobs/${var.glue_security_configuration_name}-role/${local.glue_role}/error:*",
    ]
  }

  # PutMetricData has no resource-level permissions: the namespace condition is the scope.
  statement {
    sid       = "GlueJobMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Glue"]
    }
  }
}

resource "aws_iam_role" "glue" {
  name               = local.glue_role
  assume_role_policy = data.aws_iam_policy_document.glue_trust.json
}

resource "aws_iam_role_policy" "glue" {
  name   = "pipeline"
  role   = aws_iam_role.glue.id
  policy = data.aws_iam_policy_document.glue.json
}
