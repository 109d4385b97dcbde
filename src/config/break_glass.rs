//! `[break_glass]`: the role emergency access assumes, who approves it, and where requests
//! are kept. See `crate::break_glass` and docs/guide/break-glass.md.

use super::error::Problem;
use crate::duration::DurationRange;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// `[break_glass]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakGlass {
    pub role_arn: Spanned<String>,
    pub max_duration: Option<Spanned<String>>,
    pub request_ttl: Option<Spanned<String>>,
    pub approvers: Spanned<Vec<String>>,
    pub approvals_needed: Option<Spanned<u32>>,
    pub parameter_prefix: Option<Spanned<String>>,
}

/// Who may approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    /// An IAM user or role, by ARN (`arn:aws:iam::ACCOUNT:user/NAME`, `...:role/NAME`).
    Arn(String),
    /// Every member of this IAM group.
    Group(String),
}

/// A validated `[break_glass]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassConfig {
    /// The role that is assumed.
    pub role_arn: String,
    /// The longest access a request may ask for (default 4h; never above the role's
    /// MaxSessionDuration, which is read when a request is made).
    pub max_duration: Duration,
    /// How long a request waits for its approvals (default 1h).
    pub request_ttl: Duration,
    /// Who may approve.
    pub approvers: Vec<Approver>,
    /// How many distinct approvers are needed (default 1); the requester never counts.
    pub approvals_needed: u32,
    /// The SSM parameter prefix the requests are kept under.
    pub parameter_prefix: String,
}

/// `max_duration`: what AssumeRole allows at all.
pub const MAX_DURATION_RANGE: DurationRange = DurationRange::secs(15 * 60, 12 * 3600);
/// `request_ttl`: a minute to a week.
pub const REQUEST_TTL_RANGE: DurationRange = DurationRange::secs(60, 7 * 86_400);

fn is_iam_arn(text: &str, kinds: &[&str]) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && kinds.iter().any(|k| {
            parts[5]
                .strip_prefix(k)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|name| !name.is_empty() && !name.ends_with('/'))
        })
}

fn duration(
    name: &str,
    value: &Option<Spanned<String>>,
    range: DurationRange,
    default: Duration,
    offset: usize,
) -> Result<Duration, Problem> {
    match value {
        None => Ok(default),
        Some(v) => range.parse(v.get_ref()).map_err(|m| {
            Problem::new(
                v.span().start.max(offset),
                format!("[break_glass] {name}: {m}"),
                "durations look like \"4h\" or \"90m\"",
            )
        }),
    }
}

/// Validate `[break_glass]`.
pub(super) fn check(raw: Spanned<RawBreakGlass>) -> Result<BreakGlassConfig, Problem> {
    let offset = raw.span().start;
    let raw = raw.into_inner();
    if !is_iam_arn(raw.role_arn.get_ref(), &["role"]) {
        return Err(Problem::new(
            raw.role_arn.span().start,
            format!(
                "[break_glass] role_arn '{}' is not an IAM role ARN",
                raw.role_arn.get_ref()
            ),
            "write role_arn = \"arn:aws:iam::123456789012:role/break-glass\"",
        ));
    }
    let max_duration = duration(
        "max_duration",
        &raw.max_duration,
        MAX_DURATION_RANGE,
        Duration::from_secs(4 * 3600),
        offset,
    )?;
    let request_ttl = duration(
        "request_ttl",
        &raw.request_ttl,
        REQUEST_TTL_RANGE,
        Duration::from_secs(3600),
        offset,
    )?;
    let approvers_at = raw.approvers.span().start;
    let mut approvers = Vec::new();
    for entry in raw.approvers.get_ref() {
        let approver = if entry.starts_with("arn:") {
            if is_iam_arn(entry, &["user", "role"]) {
                Approver::Arn(entry.clone())
            } else if is_iam_arn(entry, &["group"]) {
                Approver::Group(entry.rsplit('/').next().unwrap_or_default().to_string())
            } else {
                return Err(Problem::new(
                    approvers_at,
                    format!("[break_glass] approver '{entry}' is not an IAM user, role or group ARN"),
                    "list IAM ARNs (arn:aws:iam::ACCOUNT:user/NAME, ...:role/NAME) or IAM group names",
                ));
            }
        } else if super::validate::is_valid_iam_user_name(entry) {
            Approver::Group(entry.clone())
        } else {
            return Err(Problem::new(
                approvers_at,
                format!("[break_glass] approver '{entry}' is neither an IAM ARN nor a group name"),
                "list IAM ARNs (arn:aws:iam::ACCOUNT:user/NAME, ...:role/NAME) or IAM group names",
            ));
        };
        approvers.push(approver);
    }
    if approvers.is_empty() {
        return Err(Problem::new(
            approvers_at,
            "[break_glass] approvers is empty: no request could ever be approved".to_string(),
            "list who may approve: IAM user/role ARNs or an IAM group name",
        ));
    }
    let approvals_needed = match &raw.approvals_needed {
        None => 1,
        Some(n) if (1..=10).contains(n.get_ref()) => *n.get_ref(),
        Some(n) => {
            return Err(Problem::new(
                n.span().start,
                format!(
                    "[break_glass] approvals_needed = {} is out of range: allowed are 1 to 10",
                    n.get_ref()
                ),
                "the requester never counts; e.g. approvals_needed = 2",
            ))
        }
    };
    let only_arns = approvers.iter().all(|a| matches!(a, Approver::Arn(_)));
    if only_arns && approvers.len() < approvals_needed as usize {
        return Err(Problem::new(
            raw.approvals_needed.as_ref().map_or(approvers_at, |n| n.span().start),
            format!(
                "[break_glass] approvals_needed = {approvals_needed} but only {} approvers are listed",
                approvers.len()
            ),
            "list more approvers, or lower approvals_needed",
        ));
    }
    let parameter_prefix = match raw.parameter_prefix {
        None => "/credrot/break-glass".to_string(),
        Some(p) => {
            let text = p.get_ref();
            let ok = text.starts_with('/')
                && !text.ends_with('/')
                && text.len() <= 900
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
                && !text.to_ascii_lowercase().starts_with("/aws")
                && !text.to_ascii_lowercase().starts_with("/ssm");
            if !ok {
                return Err(Problem::new(
                    p.span().start,
                    format!("[break_glass] parameter_prefix '{text}' is not a usable SSM parameter path"),
                    "start with '/', do not end with one, use letters, digits and _ . - /, and not /aws or /ssm",
                ));
            }
            text.clone()
        }
    };
    Ok(BreakGlassConfig {
        role_arn: raw.role_arn.into_inner(),
        max_duration,
        request_ttl,
        approvers,
        approvals_needed,
        parameter_prefix,
    })
}
