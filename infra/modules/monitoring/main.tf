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

  # The data-plane operations the ledger calls (include/ndjson_pipeline/ledger and the sensors'
  # trigger): SystemErrors exists only per TableName and Operation, so the alarm sums one series
  # per operation. tests/infra/test_alarms.py keeps this list equal to the code's calls.
  ledger_operations = ["BatchGetItem", "DeleteItem", "GetItem", "PutItem", "Query", "TransactWriteItems", "UpdateItem"]
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

# Published by every day report: 1 when more of the day's rows than the pipeline setting rescued_rows_alert_percent
# (the threshold's one home) kept values in _rescued_data, else 0.
resource "aws_cloudwatch_metric_alarm" "rescued_rows" {
  alarm_name          = "${var.name_prefix}-rescued-rows"
  alarm_description   = "More of a day's rows than the setting rescued_rows_alert_percent kept values in _rescued_data: the data carries fields or types the declared schema does not read. The day report lists them and proposes the next schema version."
  namespace           = var.metric_namespace
  metric_name         = "RescuedRowsAlerts"
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

# Published on a conversion task's last failed try (a Glue run that failed or could not start,
# after Airflow's retries): its files go back to PENDING or, out of attempts, to FAILED.
resource "aws_cloudwatch_metric_alarm" "failed_conversions" {
  alarm_name          = "${var.name_prefix}-failed-conversions"
  alarm_description   = "A manifest's conversion failed for good (its task's last try): its files are retried or FAILED."
  namespace           = var.metric_namespace
  metric_name         = "FailedConversions"
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

# Throttled reads and writes of the ledger and of its work index (a throttled index write throttles
# the table write that feeds it). The *ThrottleEvents metrics exist per TableName, and per TableName
# and GlobalSecondaryIndexName for an index; on an on-demand table they count hot-partition and
# account-limit throttling. Every ledger write is retried by the SDK, so one throttle is no outage,
# but throttling in two consecutive periods means the day shards are too hot.
resource "aws_cloudwatch_metric_alarm" "ledger_throttled" {
  alarm_name          = "${var.name_prefix}-ledger-throttled"
  alarm_description   = "DynamoDB throttled reads or writes of ${var.ledger_table_name} or its index ${var.ledger_index_name} in two consecutive 5-minute periods."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "throttles"
    expression  = "SUM(METRICS())"
    label       = "Throttle events of the ledger and its work index"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = {
      table_reads  = { metric_name = "ReadThrottleEvents", dimensions = { TableName = var.ledger_table_name } }
      table_writes = { metric_name = "WriteThrottleEvents", dimensions = { TableName = var.ledger_table_name } }
      index_reads  = { metric_name = "ReadThrottleEvents", dimensions = { TableName = var.ledger_table_name, GlobalSecondaryIndexName = var.ledger_index_name } }
      index_writes = { metric_name = "WriteThrottleEvents", dimensions = { TableName = var.ledger_table_name, GlobalSecondaryIndexName = var.ledger_index_name } }
    }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/DynamoDB"
        metric_name = metric_query.value.metric_name
        dimensions  = metric_query.value.dimensions
        period      = 300
        stat        = "Sum"
      }
    }
  }
}

# Server-side errors (HTTP 500) of the ledger's requests. The SDK retries them, but they persist
# through a DynamoDB incident: intake then stops storing events (they wait in the queue) and
# transitions fail until it ends.
resource "aws_cloudwatch_metric_alarm" "ledger_system_errors" {
  alarm_name          = "${var.name_prefix}-ledger-system-errors"
  alarm_description   = "DynamoDB answered requests to ${var.ledger_table_name} with server errors."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "errors"
    expression  = "SUM(METRICS())"
    label       = "System errors of the ledger's operations"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = toset(local.ledger_operations)
    content {
      id = lower(metric_query.value)
      metric {
        namespace   = "AWS/DynamoDB"
        metric_name = "SystemErrors"
        dimensions  = { TableName = var.ledger_table_name, Operation = metric_query.value }
        period      = 300
        stat        = "Sum"
      }
    }
  }
}

# The Airflow metric scheduler_heartbeat as MWAA publishes it: namespace AmazonMWAA (AWS/MWAA holds
# MWAA's container, queue and database metrics, not Airflow's), dimensions Function = Scheduler and
# Environment. No heartbeat for 10 minutes, or no data at all, means no scheduler runs: nothing is
# scheduled, the intake and ingest DAGs stop.
resource "aws_cloudwatch_metric_alarm" "mwaa_scheduler_heartbeat" {
  alarm_name          = "${var.name_prefix}-mwaa-scheduler-heartbeat"
  alarm_description   = "No scheduler of the MWAA environment ${var.mwaa_environment_name} heartbeated: no DAG is scheduled."
  namespace           = "AmazonMWAA"
  metric_name         = "SchedulerHeartbeat"
  dimensions          = { Environment = var.mwaa_environment_name, Function = "Scheduler" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
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

# The Glue failure rule publishes to SNS on its own: if EventBridge cannot deliver (the topic's key
# policy or topic policy refuses it), the failure would go unseen. Its delivery failures alarm here.
resource "aws_cloudwatch_metric_alarm" "glue_failure_rule_undelivered" {
  alarm_name          = "${var.name_prefix}-glue-failure-alert-undelivered"
  alarm_description   = "EventBridge could not deliver a Glue run failure of ${var.glue_job_name} to the alerts topic."
  namespace           = "AWS/Events"
  metric_name         = "FailedInvocations"
  dimensions          = { RuleName = aws_cloudwatch_event_rule.glue_failed.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}
