# The MWAA environment itself (optional in the env root: many teams run MWAA from a
# platform repository and only need the execution role and the assets bucket).

resource "aws_security_group" "mwaa" {
  name        = "${var.environment_name}-mwaa"
  description = "MWAA workers, scheduler and web server"
  vpc_id      = var.vpc_id

  # MWAA's components talk to each other through this group (AWS requirement).
  ingress {
    description = "MWAA components within the environment"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  egress {
    description = "MWAA components within the environment"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  # Nothing beyond the VPC: AWS APIs only through the VPC endpoints. requirements.txt installs
  # from the wheels in plugins.zip (--no-index), so MWAA never needs PyPI. The environment's own
  # database and web server endpoints carry this group and are reached through the rule above.
  egress {
    description     = "HTTPS to the interface endpoints"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = var.endpoint_security_group_ids
  }

  egress {
    description     = "HTTPS to S3 and DynamoDB through their gateway endpoints"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    prefix_list_ids = values(var.gateway_prefix_list_ids)
  }
}

resource "aws_mwaa_environment" "this" {
  name               = var.environment_name
  airflow_version    = var.airflow_version
  environment_class  = var.environment_class
  min_workers        = var.min_workers
  max_workers        = var.max_workers
  execution_role_arn = var.execution_role_arn
  kms_key            = var.kms_key_arn

  source_bucket_arn              = var.source_bucket_arn
  dag_s3_path                    = "dags/"
  plugins_s3_path                = "plugins/plugins.zip"
  plugins_s3_object_version      = var.plugins_s3_object_version
  requirements_s3_path           = "requirements/requirements.txt"
  requirements_s3_object_version = var.requirements_s3_object_version

  webserver_access_mode = "PRIVATE_ONLY"
  network_configuration {
    security_group_ids = [aws_security_group.mwaa.id]
    subnet_ids         = var.subnet_ids
  }

  airflow_configuration_options = var.airflow_configuration_options

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = "INFO"
    }
    scheduler_logs {
      enabled   = true
      log_level = "INFO"
    }
    task_logs {
      enabled   = true
      log_level = "INFO"
    }
    webserver_logs {
      enabled   = true
      log_level = "WARNING"
    }
    worker_logs {
      enabled   = true
      log_level = "INFO"
    }
  }
}
