# credrot as a scheduled AWS Lambda function (custom runtime provided.al2023): the function,
# its execution role with the permissions of docs/reference/iam-permissions.md, a log group
# with retention, and an EventBridge Scheduler schedule that sends the event. See
# docs/guide/scheduling.md.
#
# The package is a zip holding `bootstrap` (the credrot release binary for the function's
# architecture, renamed) and services.toml, made by
#   bash scripts/package-lambda --config services.toml --out credrot-lambda.zip

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  iam_path  = "/${trim(var.iam_path, "/")}/"
}

resource "aws_cloudwatch_log_group" "credrot" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "credrot" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

# docs/reference/iam-permissions.md: the users under the path, their SSM stores, the logs.
data "aws_iam_policy_document" "credrot" {
  statement {
    sid       = "ListUsers"
    actions   = ["iam:ListUsers"]
    resources = ["*"]
  }
  statement {
    sid = "RotateUsersUnderThePath"
    actions = [
      "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:DeleteAccessKey",
      "iam:UpdateAccessKey", "iam:GetAccessKeyLastUsed",
      "iam:ListUserTags", "iam:TagUser", "iam:UntagUser",
    ]
    resources = ["arn:${local.partition}:iam::${local.account}:user${local.iam_path}*"]
  }
  statement {
    sid = "SsmStores"
    actions = [
      "ssm:GetParameters", "ssm:PutParameter",
      "ssm:AddTagsToResource", "ssm:DeleteParameters",
    ]
    resources = ["arn:${local.partition}:ssm:${local.region}:${local.account}:parameter/${trim(var.ssm_prefix, "/")}/*"]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.credrot.arn}:*"]
  }
}

resource "aws_iam_role_policy" "credrot" {
  name   = "credrot"
  role   = aws_iam_role.credrot.id
  policy = data.aws_iam_policy_document.credrot.json
}

resource "aws_lambda_function" "credrot" {
  function_name    = var.name
  role             = aws_iam_role.credrot.arn
  filename         = var.package
  source_code_hash = filebase64sha256(var.package)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = 256
  timeout          = var.timeout_seconds
  # One run at a time: a second would only find the first's users busy.
  reserved_concurrent_executions = 1

  environment {
    variables = {
      CREDROT_CONFIG = "/var/task/services.toml"
      RUST_LOG       = "warn,aws_config=error,aws_runtime=error,credrot=info"
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.credrot.name
  }

  depends_on = [aws_iam_role_policy.credrot]
}

# Asynchronous invocations (the schedule's) are retried by Lambda on a function error;
# a rerun finishes what a failed run left, so one retry is enough.
resource "aws_lambda_function_event_invoke_config" "credrot" {
  function_name                = aws_lambda_function.credrot.function_name
  maximum_retry_attempts       = 1
  maximum_event_age_in_seconds = 3600
}

data "aws_iam_policy_document" "assume_scheduler" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume_scheduler.json
}

data "aws_iam_policy_document" "invoke" {
  statement {
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.credrot.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-credrot"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.invoke.json
}

resource "aws_scheduler_schedule" "credrot" {
  name                = var.name
  schedule_expression = var.schedule
  flexible_time_window {
    mode = "OFF"
  }
  target {
    arn      = aws_lambda_function.credrot.arn
    role_arn = aws_iam_role.scheduler.arn
    # The event: the same options as the command line (docs/guide/scheduling.md).
    input = jsonencode(var.event != null ? var.event : { command = "rotate", path = trim(var.iam_path, "/") })
    retry_policy {
      maximum_retry_attempts = 0
    }
  }
}
