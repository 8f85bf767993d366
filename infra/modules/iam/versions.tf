terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # A minimum only (the root module pins the version): nothing here needs 6.x.
      version = ">= 5.65, < 7.0"
    }
  }
}
