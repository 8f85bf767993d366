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

resource "aws_glue_job" "this" {
  name                   = var.job_name
  role_arn               = var.role_arn
  glue_version           = var.spec.glue_version
  worker_type            = var.spec.worker_type
  number_of_workers      = var.spec.number_of_workers
  execution_class        = "STANDARD" # FLEX runs can wait many minutes for capacity: too slow for the latency target.
  security_configuration = aws_glue_security_configuration.job.name
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
