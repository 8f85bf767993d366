# Alerts: CloudWatch alarms and a Glue failure rule, all to one KMS-encrypted SNS topic.
# What each alarm means and what to do is in docs/deployment.md.

data "aws_caller_identity" "current" {}

# CloudWatch and EventBridge encrypt what they publish to the topic with this key.
module "key" {
  source      = "../kms_key"
  name        = "${var.name_prefix}-alerts"
  description = "SNS encryption for the ${var.name_prefix} alerts topic"
  service_grants = [for service in ["cloudwatch.amazonaws.com", "events.amazonaws.com"] : {
    sid        = "Publish${title(split(".", service)[0])}"
    service    = service
    actions    = ["kms:GenerateDataKey", "kms:Decrypt"]
    conditions = [{ test = "StringEquals", variable = "aws:SourceAccount", values = [data.aws_caller_identity.current.account_id] }]
  }]
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-alerts"
  kms_master_key_id = module.key.arn
}

data "aws_iam_policy_document" "alerts" {
  statement {
    sid       = "CloudWatchAlarms"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "GlueFailureRule"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.glue_failed.arn]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  actions = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name_prefix}-dlq-not-empty"
  alarm_description   = "S3 events failed ${var.dlq_max_receive_count} receives and sit in ${var.dlq_name}: intake cannot store them."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.dlq_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "queue_backlog_age" {
  alarm_name          = "${var.name_prefix}-event-queue-backlog"
  alarm_description   = "The oldest S3 event in ${var.queue_name} waited longer than ${var.queue_age_threshold_seconds}s: intake is not running or not keeping up."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# The DAG publishes this every cycle (0 when nothing is pending), so missing data
# means the DAG stopped publishing: that is alarming too.
resource "aws_cloudwatch_metric_alarm" "oldest_pending_age" {
  alarm_name          = "${var.name_prefix}-oldest-pending-file"
  alarm_description   = "A landing file has been PENDING in the ledger for more than ${var.pending_age_threshold_seconds}s, or the DAG stopped reporting."
  namespace           = var.metric_namespace
  metric_name         = "OldestPendingAgeSeconds"
  dimensions          = { Dataset = var.dataset }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.pending_age_threshold_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "failed_files" {
  alarm_name          = "${var.name_prefix}-failed-files"
  alarm_description   = "Files reached FAILED in the ledger (attempts exhausted): they need a look and a replay."
  namespace           = var.metric_namespace
  metric_name         = "FailedFiles"
  dimensions          = { Dataset = var.dataset }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# Published by every sweep that could not repair a manifest (its files stay CLAIMED until one can).
resource "aws_cloudwatch_metric_alarm" "unrepaired_manifests" {
  alarm_name          = "${var.name_prefix}-unrepaired-manifests"
  alarm_description   = "A compensation could not complete (refused delete, run that will not stop, inconsistent record); every sweep retries it."
  namespace           = var.metric_namespace
  metric_name         = "UnrepairedManifests"
  dimensions          = { Dataset = var.dataset }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# Published by the end-of-day reconcile when S3 still lists a version the ledger holds QUARANTINED as superseded.
resource "aws_cloudwatch_metric_alarm" "present_but_superseded" {
  alarm_name          = "${var.name_prefix}-present-but-superseded"
  alarm_description   = "Versions quarantined as superseded are still in S3 with their eTag: their rows are missing until replayed (ndjson_maintenance, replay_quarantined)."
  namespace           = var.metric_namespace
  metric_name         = "PresentButSupersededFiles"
  dimensions          = { Dataset = var.dataset }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# Every non-successful terminal state of a run of the one job (STOPPED is left out:
# the DAG stops runs on purpose when a task is killed).
resource "aws_cloudwatch_event_rule" "glue_failed" {
  name        = "${var.name_prefix}-glue-run-failed"
  description = "A run of ${var.glue_job_name} ended FAILED, TIMEOUT or ERROR"
  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Job State Change"]
    detail = {
      jobName = [var.glue_job_name]
      state   = ["FAILED", "TIMEOUT", "ERROR"]
    }
  })
}

resource "aws_cloudwatch_event_target" "glue_failed" {
  rule = aws_cloudwatch_event_rule.glue_failed.name
  arn  = aws_sns_topic.alerts.arn
}
