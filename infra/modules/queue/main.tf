# S3 ObjectCreated events of the landing prefix -> the event queue (DLQ after
# maxReceiveCount failed receives). Shapes come from resources.json via var.spec.

data "aws_caller_identity" "current" {}

# S3 encrypts the messages it sends with this key, so the key policy must let
# s3.amazonaws.com use it; an AWS-managed SQS key cannot grant that.
module "key" {
  source      = "../kms_key"
  name        = "${var.queue_name}-sqs"
  description = "SQS encryption for ${var.queue_name} and its DLQ (S3 event notifications)"
  service_grants = [{
    sid     = "S3EventNotifications"
    service = "s3.amazonaws.com"
    actions = ["kms:GenerateDataKey", "kms:Decrypt"]
    conditions = [
      { test = "StringEquals", variable = "aws:SourceAccount", values = [data.aws_caller_identity.current.account_id] },
      { test = "ArnEquals", variable = "aws:SourceArn", values = [var.landing_bucket_arn] },
    ]
  }]
}

resource "aws_sqs_queue" "dlq" {
  name                      = var.dlq_name
  message_retention_seconds = var.spec.message_retention_seconds
  kms_master_key_id         = module.key.arn
}

resource "aws_sqs_queue" "events" {
  name                       = var.queue_name
  visibility_timeout_seconds = var.spec.visibility_timeout_seconds
  message_retention_seconds  = var.spec.message_retention_seconds
  receive_wait_time_seconds  = var.spec.receive_wait_time_seconds
  kms_master_key_id          = module.key.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.spec.dlq_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

data "aws_iam_policy_document" "events" {
  statement {
    sid       = "LandingBucketNotifications"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [var.landing_bucket_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.events.json
}

resource "aws_s3_bucket_notification" "landing" {
  # S3 validates the destination when the notification is written: the queue policy must exist first.
  depends_on = [aws_sqs_queue_policy.events]

  bucket = var.landing_bucket_id
  queue {
    id            = "landing-object-created"
    queue_arn     = aws_sqs_queue.events.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.landing_prefix
  }
}
