variable "name" {
  description = "Name of the function, its role, log group and schedule"
  type        = string
  default     = "credrot"
}

variable "package" {
  description = "The zip holding bootstrap (the credrot binary) and services.toml"
  type        = string
}

variable "architecture" {
  description = "arm64 or x86_64: the architecture the credrot binary was built for"
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "iam_path" {
  description = "The IAM path whose users are rotated, e.g. PSKServiceAccounts"
  type        = string
}

variable "ssm_prefix" {
  description = "The SSM parameter prefix the stores write under (services.toml), e.g. psk"
  type        = string
}

variable "schedule" {
  description = "EventBridge Scheduler expression"
  type        = string
  default     = "cron(17 3 * * ? *)"
}

variable "event" {
  description = "The event to send; default {command = \"rotate\", path = var.iam_path}"
  type        = any
  default     = null
}

variable "timeout_seconds" {
  description = "The function's timeout (a run killed by it is finished by the next one)"
  type        = number
  default     = 900
}

variable "log_retention_days" {
  description = "Days the function's logs are kept"
  type        = number
  default     = 90
}
