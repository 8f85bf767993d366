# A customer-managed KMS key with rotation on. Every key of the pipeline comes from
# here so the administration statement and the service grants look the same everywhere.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is the key itself, and the root statement is AWS's default that keeps the key manageable.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is the key itself; service statements are limited by source account or ARN.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the key itself (a key policy cannot name another resource).
  # The account root keeps full control so the key can never become unmanageable
  # (AWS's default key policy). In a key policy, Resource "*" means "this key".
  statement {
    sid       = "KeyAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # AWS services that encrypt on the pipeline's behalf (S3 events into SQS, CloudWatch
  # alarms into SNS, CloudWatch Logs), each limited to this account.
  dynamic "statement" {
    for_each = var.service_grants
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = [statement.value.service]
      }
      dynamic "condition" {
        for_each = statement.value.conditions
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
