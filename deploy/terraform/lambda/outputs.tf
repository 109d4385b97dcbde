output "function_arn" {
  value = aws_lambda_function.credrot.arn
}

output "role_arn" {
  description = "The execution role: the identity that rotates"
  value       = aws_iam_role.credrot.arn
}

output "log_group" {
  value = aws_cloudwatch_log_group.credrot.name
}
