# The one Glue job that converts a manifest's files to Parquet. Runs are started by
# the DAG with per-run arguments (manifest, extra py files, schema); the definition
# here fixes everything a run cannot override, including the script location
# (StartJobRun has no script override, so a new script means a new var.script_s3_uri).

resource "aws_cloudwatch_log_group" "job" {
  name              = "/aws-glue/jobs/${var.job_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_glue_security_configuration" "job" {
  name = var.job_name

  encryption_configuration {
    s3_encryption {
      s3_encryption_mode = "SSE-KMS"
      kms_key_arn        = var.kms_key_arn
    }
    cloudwatch_encryption {
      cloudwatch_encryption_mode = "SSE-KMS"
      kms_key_arn                = var.kms_key_arn
    }
    job_bookmarks_encryption {
      job_bookmarks_encryption_mode = "CSE-KMS"
      kms_key_arn                   = var.kms_key_arn
    }
  }
}

# The job runs inside the VPC (a job without a connection runs outside it, on Glue's own network):
# its workers get network interfaces in a private subnet and reach S3 and the AWS APIs only
# through the VPC endpoints, so the buckets can refuse any request that does not come through them.
data "aws_subnet" "job" {
  id = var.subnet_id
}

resource "aws_security_group" "job" {
  #checkov:skip=CKV2_AWS_5:Attached to the job's workers through aws_glue_connection.vpc (security_group_id_list), an attachment checkov does not follow.
  name        = "${var.job_name}-glue"
  description = "Glue workers of ${var.job_name}: each other and the VPC endpoints only"
  vpc_id      = data.aws_subnet.job.vpc_id

  # Glue requires a self-referencing rule: the driver and the executors talk to each other on any TCP port.
  ingress {
    description = "Glue workers among themselves"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    self        = true
  }

  egress {
    description = "Glue workers among themselves"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    self        = true
  }

  egress {
    description     = "HTTPS to the interface endpoints (Glue, CloudWatch Logs and metrics, KMS, STS)"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = var.endpoint_security_group_ids
  }

  # S3 only: the job calls no other gateway service (its role has no DynamoDB permission).
  egress {
    description     = "HTTPS to S3 through its gateway endpoint"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    prefix_list_ids = [var.s3_prefix_list_id]
  }
}

resource "aws_glue_connection" "vpc" {
  name            = var.job_name
  description     = "The private subnet ${var.job_name} runs in"
  connection_type = "NETWORK"

  physical_connection_requirements {
    availability_zone      = data.aws_subnet.job.availability_zone
    subnet_id              = data.aws_subnet.job.id
    security_group_id_list = [aws_security_group.job.id]
  }
}

resource "aws_glue_job" "this" {
  name                   = var.job_name
  role_arn               = var.role_arn
  glue_version           = var.spec.glue_version
  worker_type            = var.spec.worker_type
  number_of_workers      = var.spec.number_of_workers
  execution_class        = "STANDARD" # ingest's runs; the others ask StartJobRun for FLEX (background_execution_class).
  security_configuration = aws_glue_security_configuration.job.name
  connections            = [aws_glue_connection.vpc.name]
  timeout                = var.timeout_minutes
  max_retries            = 0 # Airflow owns retries; a Glue-side retry would run a manifest twice.
  # Runs over the concurrency limit wait in Glue's queue instead of failing with ConcurrentRunsExceeded.
  job_run_queuing_enabled = true

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = var.script_s3_uri
  }

  # The DAG maps one task per manifest with the same limit (resources.json
  # glue_job.max_concurrent_runs), so Glue never refuses a run the DAG started.
  execution_property {
    max_concurrent_runs = var.spec.max_concurrent_runs
  }

  default_arguments = {
    "--job-language"                     = "python"
    "--job-bookmark-option"              = "job-bookmark-disable" # manifests already give exactly-once input
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.job.name
    "--enable-metrics"                   = "true"
    "--enable-observability-metrics"     = "true"
    "--extra-py-files"                   = join(",", var.extra_py_files_s3_uris) # Glue takes a comma-separated list
  }
}
