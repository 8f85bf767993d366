terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.65 added job_run_queuing_enabled to aws_glue_job; 6.x the Iceberg table's
      # open_table_format_input.iceberg_input.iceberg_table_input (schema with ids, partition spec).
      version = "~> 6.62"
    }
  }

  # Configure state in a backend file at init: terraform init -backend-config=backend.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project   = "ndjson-pipeline"
      Pipeline  = var.name_prefix
      ManagedBy = "terraform"
    }
  }
}
