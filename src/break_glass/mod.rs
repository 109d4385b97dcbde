//! Break-glass emergency access: time-limited use of a privileged role, only after someone
//! else approved it, with every step audited and announced.
//!
//! Built on AWS's own primitives:
//! - who asks or approves is the caller's STS `GetCallerIdentity` ARN, never a name typed
//!   on the command line;
//! - requests live in SSM Parameter Store under `[break_glass] parameter_prefix`, one
//!   parameter per request and one parameter *version* per step ([`state`]): any machine
//!   with the same IAM permissions sees the same requests, the history is kept by SSM, and
//!   who may read or write it is plain IAM;
//! - access is `sts:AssumeRole` of the configured role, for at most what is left of the
//!   approved window, with session tags (request id, requester, approvers, reason) and
//!   `SourceIdentity`, so CloudTrail ties every call to the request;
//! - revocation is AWS's documented one: an inline deny-all policy on the role conditioned
//!   on `aws:TokenIssueTime`, which refuses every session issued before it.

pub mod aws;
pub mod cli;
pub mod state;

pub use aws::{AssumeParams, BreakGlassAws, SdkBreakGlass};
pub use state::{Request, Status, Step};

use crate::aws::AwsError;
use crate::config::{Approver, BreakGlassConfig};
use crate::session::TemporaryCredentials;
use state::{principal, same_person, secs, show, time};
use std::time::{Duration, SystemTime};

/// The name of the inline policy `revoke` puts on the role: the one the IAM console's
/// "Revoke active sessions" writes, so both update the same policy.
pub const REVOKE_POLICY: &str = "AWSRevokeOlderSessions";
/// The shortest session AssumeRole issues.
pub const MIN_SESSION: Duration = Duration::from_secs(15 * 60);
/// The longest reason: a session tag value holds at most 256 characters.
pub const MAX_REASON: usize = 256;

/// Why a break-glass step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    /// The command line or configuration asks for something that cannot work.
    #[error("{0}")]
    Usage(String),
    /// No request with this id under the prefix.
    #[error(
        "there is no break-glass request '{id}' under {prefix}; run 'credrot break-glass list'"
    )]
    UnknownRequest {
        /// The id asked for.
        id: String,
        /// The parameter prefix.
        prefix: String,
    },
    /// The step is not allowed: self-approval, not an approver, expired, revoked, ...
    #[error("break-glass {step} of request {id} refused for {caller}: {reason}")]
    Refused {
        /// The step.
        step: &'static str,
        /// The request.
        id: String,
        /// Who asked.
        caller: String,
        /// Why not.
        reason: String,
    },
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl BreakGlassError {
    /// Whether this is a usage or configuration error (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BreakGlassError::Usage(_) | BreakGlassError::UnknownRequest { .. }
        )
    }
}

/// The last part of an ARN's resource: a user, role or session name.
pub fn arn_name(arn: &str) -> &str {
    arn.rsplit(['/', ':']).next().unwrap_or(arn)
}

/// `value` as a session tag value allows it: letters, digits, spaces and `_ . : / = + - @`,
/// at most 256 characters; anything else becomes `_`.
pub fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// `name` as `SourceIdentity` allows it: 2 to 64 of `[A-Za-z0-9_+=,.@-]`.
pub fn source_identity(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.to_ascii_lowercase().starts_with("aws:") {
        s.replace_range(..4, "aws_");
    }
    while s.len() < 2 {
        s.push('_');
    }
    s
}

/// The inline policy that refuses every session of the role issued before `before`.
pub fn revoke_policy(before: SystemTime) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": ["*"],
            "Resource": ["*"],
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": show(before)}}
        }]
    })
    .to_string()
}

/// Who may approve, with group members read once.
struct Approvers {
    arns: Vec<String>,
}

impl Approvers {
    fn contains(&self, caller: &str) -> bool {
        self.arns.iter().any(|a| {
            if same_person(a, caller) {
                return true;
            }
            // A role ARN stands for every session of the role.
            let parts: Vec<&str> = a.splitn(6, ':').collect();
            match (
                parts.get(4),
                parts.get(5).and_then(|r| r.strip_prefix("role/")),
            ) {
                (Some(account), Some(role)) => {
                    let role = role.rsplit('/').next().unwrap_or(role);
                    caller.starts_with(&format!("arn:aws:sts::{account}:assumed-role/{role}/"))
                }
                _ => false,
            }
        })
    }
}

/// What one step did.
#[derive(Debug)]
pub struct Outcome {
    /// The request after the step.
    pub request: Request,
    /// Who took it.
    pub caller: String,
    /// The parameter the request lives in.
    pub parameter: String,
    /// For `credentials`: what was issued.
    pub credentials: Option<TemporaryCredentials>,
    /// What to tell the user besides the request.
    pub note: Option<String>,
}

/// Break-glass over `aws` with `config`.
pub struct BreakGlass<'a> {
    /// The configuration.
    pub config: &'a BreakGlassConfig,
    /// The AWS calls.
    pub aws: &'a dyn BreakGlassAws,
}

/// A new request id: the time and six hex digits of a hash of time and process.
fn new_id(now: SystemTime) -> String {
    use sha2::{Digest, Sha256};
    let real = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!("{}-{}-{}", real.as_nanos(), std::process::id(), secs(now));
    let hash = hex::encode(Sha256::digest(seed.as_bytes()));
    let stamp = humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace(['-', ':'], "");
    format!("bg-{}-{}", stamp.trim_end_matches('Z'), &hash[..6])
}

impl BreakGlass<'_> {
    /// The parameter of request `id`.
    pub fn parameter(&self, id: &str) -> String {
        format!("{}/{id}", self.config.parameter_prefix)
    }

    fn role_name(&self) -> &str {
        arn_name(&self.config.role_arn)
    }

    async fn approvers(&self) -> Result<Approvers, BreakGlassError> {
        let mut arns = Vec::new();
        for approver in &self.config.approvers {
            match approver {
                Approver::Arn(arn) => arns.push(arn.clone()),
                Approver::Group(group) => arns.extend(self.aws.group_members(group).await?),
            }
        }
        Ok(Approvers { arns })
    }

    /// Read and fold request `id`.
    pub async fn load(&self, id: &str) -> Result<Request, BreakGlassError> {
        let approvers = self.approvers().await?;
        self.load_with(id, &approvers).await
    }

    async fn load_with(&self, id: &str, approvers: &Approvers) -> Result<Request, BreakGlassError> {
        let unknown = || BreakGlassError::UnknownRequest {
            id: id.to_string(),
            prefix: self.config.parameter_prefix.clone(),
        };
        let valid = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(unknown());
        }
        let history = match self.aws.history(&self.parameter(id)).await {
            Ok(h) if !h.is_empty() => h,
            Ok(_) => return Err(unknown()),
            Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let request = Request::fold(&history, &|a| approvers.contains(a)).map_err(|why| {
            BreakGlassError::Usage(format!(
                "{} is not a break-glass request: {why}",
                self.parameter(id)
            ))
        })?;
        if request.id != id {
            return Err(BreakGlassError::Usage(format!(
                "{} holds request '{}', not '{id}'",
                self.parameter(id),
                request.id
            )));
        }
        Ok(request)
    }

    /// Who is asking.
    pub async fn caller(&self) -> Result<String, BreakGlassError> {
        Ok(self.aws.caller_arn().await?)
    }

    /// `request`: record a request by the caller.
    pub async fn request(
        &self,
        caller: &str,
        reason: &str,
        duration: Option<Duration>,
    ) -> Result<Outcome, BreakGlassError> {
        let asked = duration.unwrap_or(self.config.max_duration);
        let role_max = self.aws.role_max_session(self.role_name()).await?;
        let granted = asked.min(role_max);
        let note = (granted < asked).then(|| {
            format!(
                "the role's MaxSessionDuration is {}: the request is for {}",
                humantime::format_duration(role_max),
                humantime::format_duration(granted)
            )
        });
        let now = crate::clock::now();
        let id = new_id(now);
        let step = Step::Request {
            id: id.clone(),
            by: caller.to_string(),
            at: secs(now),
            reason: reason.to_string(),
            duration_secs: granted.as_secs(),
            approve_by: secs(now + self.config.request_ttl),
            role_arn: self.config.role_arn.clone(),
            approvals_needed: self.config.approvals_needed,
        };
        let parameter = self.parameter(&id);
        let version = self
            .aws
            .put_step(
                &parameter,
                &serde_json::to_string(&step).expect("steps serialize"),
                true,
            )
            .await?;
        // Without the label SSM would drop the request itself after 100 more steps; with it,
        // the 101st step is refused instead.
        if let Err(e) = self.aws.label(&parameter, version, "request").await {
            tracing::warn!(
                "cannot label {parameter}:{version} as the request ({e}); after 100 steps SSM would drop it"
            );
        }
        let request = self.load(&id).await?;
        Ok(Outcome {
            request,
            caller: caller.to_string(),
            parameter,
            credentials: None,
            note,
        })
    }

    fn refused(
        step: &'static str,
        request: &Request,
        caller: &str,
        reason: String,
    ) -> BreakGlassError {
        BreakGlassError::Refused {
            step,
            id: request.id.clone(),
            caller: caller.to_string(),
            reason,
        }
    }

    /// Check `step` against the request, record it, and read the request back.
    async fn record(
        &self,
        caller: &str,
        id: &str,
        make: impl FnOnce(&Request, SystemTime) -> Result<Step, String>,
        name: &'static str,
    ) -> Result<(Request, Step), BreakGlassError> {
        let approvers = self.approvers().await?;
        let request = self.load_with(id, &approvers).await?;
        let now = crate::clock::now();
        let step = make(&request, now).map_err(|why| Self::refused(name, &request, caller, why))?;
        request
            .check(&step, &|a| approvers.contains(a))
            .map_err(|why| Self::refused(name, &request, caller, why))?;
        Ok((request, step))
    }

    async fn put(&self, id: &str, step: &Step) -> Result<Request, BreakGlassError> {
        self.aws
            .put_step(
                &self.parameter(id),
                &serde_json::to_string(step).expect("steps serialize"),
                false,
            )
            .await?;
        self.load(id).await
    }

    fn outcome(&self, request: Request, caller: &str, note: Option<String>) -> Outcome {
        Outcome {
            parameter: self.parameter(&request.id),
            request,
            caller: caller.to_string(),
            credentials: None,
            note,
        }
    }

    /// `approve ID`.
    pub async fn approve(&self, caller: &str, id: &str) -> Result<Outcome, BreakGlassError> {
        let (_, step) = self
            .record(
                caller,
                id,
                |_, now| {
                    Ok(Step::Approve {
                        by: caller.to_string(),
                        at: secs(now),
                    })
                },
                "approve",
            )
            .await?;
        let request = self.put(id, &step).await?;
        let note = match request.window_end() {
            Some(end) => Some(format!("approved: access until {}", show(end))),
            None => Some(format!(
                "{} of {} approvals",
                request.approvals.len(),
                request.approvals_needed
            )),
        };
        Ok(self.outcome(request, caller, note))
    }

    /// `deny ID`.
    pub async fn deny(
        &self,
        caller: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Outcome, BreakGlassError> {
        let (_, step) = self
            .record(
                caller,
                id,
                |_, now| {
                    Ok(Step::Deny {
                        by: caller.to_string(),
                        at: secs(now),
                        reason: reason.map(str::to_string),
                    })
                },
                "deny",
            )
            .await?;
        let request = self.put(id, &step).await?;
        Ok(self.outcome(request, caller, None))
    }

    /// `list`: every request under the prefix, newest first.
    pub async fn list(&self) -> Result<Vec<Request>, BreakGlassError> {
        let approvers = self.approvers().await?;
        let mut requests = Vec::new();
        for name in self.aws.list(&self.config.parameter_prefix).await? {
            let id = name.rsplit('/').next().unwrap_or(&name).to_string();
            match self.load_with(&id, &approvers).await {
                Ok(r) => requests.push(r),
                Err(e) => tracing::warn!("skipping {name}: {e}"),
            }
        }
        requests.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
        Ok(requests)
    }

    /// `credentials ID`: assume the role for the requester, for at most what is left of the
    /// approved window, and record the issue.
    pub async fn credentials(&self, caller: &str, id: &str) -> Result<Outcome, BreakGlassError> {
        let (request, step) = self
            .record(
                caller,
                id,
                |request, now| {
                    let end = request.window_end().unwrap_or(now);
                    let left = end.duration_since(now).unwrap_or_default();
                    let seconds = left.min(request.duration).as_secs();
                    if request.window_end().is_some() && left > Duration::ZERO && seconds < MIN_SESSION.as_secs() {
                        return Err(format!(
                            "only {} of the access window is left, less than the 15 minutes a session lasts at least; make a new request",
                            humantime::format_duration(Duration::from_secs(seconds))
                        ));
                    }
                    Ok(Step::Issue {
                        by: caller.to_string(),
                        at: secs(now),
                        access_key_id: String::new(),
                        expires_at: secs(now) + seconds,
                    })
                },
                "credentials",
            )
            .await?;
        let Step::Issue { at, expires_at, .. } = step else {
            unreachable!("credentials makes an issue step")
        };
        let approvers: Vec<&str> = request.approvals.iter().map(|a| a.by.as_str()).collect();
        let params = AssumeParams {
            role_arn: request.role_arn.clone(),
            session_name: format!("break-glass-{}", request.id)
                .chars()
                .take(64)
                .collect(),
            seconds: i32::try_from(expires_at - at).unwrap_or(i32::MAX),
            tags: vec![
                ("credrot:break-glass-request".into(), request.id.clone()),
                ("credrot:requester".into(), tag_value(&request.requester)),
                (
                    "credrot:approver".into(),
                    tag_value(
                        &approvers
                            .iter()
                            .map(|a| principal(a))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                ),
                ("credrot:reason".into(), tag_value(&request.reason)),
            ],
            source_identity: source_identity(arn_name(&request.requester)),
        };
        let credentials = self.aws.assume(&params).await?;
        let issued = Step::Issue {
            by: caller.to_string(),
            at,
            access_key_id: credentials.key.id.clone(),
            expires_at: secs(credentials.expiration),
        };
        // Credentials that are not on record are not handed out.
        let request = self.put(id, &issued).await?;
        let note = Some(format!(
            "temporary credentials {} for {} expire at {}",
            credentials.key.id,
            request.role_arn,
            show(credentials.expiration)
        ));
        let mut outcome = self.outcome(request, caller, note);
        outcome.credentials = Some(credentials);
        Ok(outcome)
    }

    /// `revoke ID`: deny every session of the role issued before now, and record it.
    pub async fn revoke(&self, caller: &str, id: &str) -> Result<Outcome, BreakGlassError> {
        let (_, step) = self
            .record(
                caller,
                id,
                |_, now| {
                    Ok(Step::Revoke {
                        by: caller.to_string(),
                        at: secs(now),
                    })
                },
                "revoke",
            )
            .await?;
        // AWS compares with the real issue time of each session: the real clock, rounded up
        // so that a session issued in this very second is refused too.
        let before = time(secs(SystemTime::now()) + 1);
        self.aws
            .put_role_policy(self.role_name(), REVOKE_POLICY, &revoke_policy(before))
            .await?;
        let request = self.put(id, &step).await?;
        let note = Some(format!(
            "every session of {} issued before {} is refused from now on (inline policy {REVOKE_POLICY}); other approved requests get new credentials with 'credrot break-glass credentials ID'",
            self.config.role_arn,
            show(before)
        ));
        Ok(self.outcome(request, caller, note))
    }
}

/// Parse a `request --duration`: 15m up to `max_duration`; checked before any AWS call.
pub fn check_duration(config: &BreakGlassConfig, asked: Duration) -> Result<(), BreakGlassError> {
    if asked < MIN_SESSION || asked > config.max_duration {
        return Err(BreakGlassError::Usage(format!(
            "--duration {} is out of range: allowed are 15m to {} ([break_glass] max_duration)",
            humantime::format_duration(asked),
            humantime::format_duration(config.max_duration)
        )));
    }
    Ok(())
}

/// Check a `request --reason`: not empty, at most 256 characters.
pub fn check_reason(reason: &str) -> Result<(), BreakGlassError> {
    let count = reason.trim().chars().count();
    if count == 0 || count > MAX_REASON {
        return Err(BreakGlassError::Usage(format!(
            "--reason must say why, in 1 to {MAX_REASON} characters (it becomes a session tag); it has {count}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_and_source_identities_are_made_acceptable() {
        assert_eq!(tag_value("db down; fix #42!"), "db down_ fix _42_");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
        assert_eq!(source_identity("alice"), "alice");
        assert_eq!(source_identity("a"), "a_");
        assert_eq!(source_identity("aws:me"), "aws_me");
        assert_eq!(source_identity("jo smith"), "jo_smith");
    }

    #[test]
    fn the_revoke_policy_is_awss_documented_one() {
        let policy: serde_json::Value =
            serde_json::from_str(&revoke_policy(time(1_800_000_000))).unwrap();
        assert_eq!(
            policy,
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Deny",
                    "Action": ["*"],
                    "Resource": ["*"],
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2027-01-15T08:00:00Z"}}
                }]
            })
        );
    }

    #[test]
    fn roles_approve_through_their_sessions() {
        let approvers = Approvers {
            arns: vec![
                "arn:aws:iam::123456789012:role/oncall".into(),
                "arn:aws:iam::123456789012:user/path/bob".into(),
            ],
        };
        assert!(approvers.contains("arn:aws:sts::123456789012:assumed-role/oncall/alice"));
        assert!(!approvers.contains("arn:aws:sts::123456789012:assumed-role/oncaller/x"));
        assert!(approvers.contains("arn:aws:iam::123456789012:user/bob"));
        assert!(!approvers.contains("arn:aws:iam::210987654321:user/bob"));
        assert_eq!(arn_name("arn:aws:iam::1:user/p/bob"), "bob");
        assert_eq!(arn_name("arn:aws:sts::1:assumed-role/r/sess"), "sess");
    }

    #[test]
    fn ids_are_ssm_name_safe_and_sortable() {
        let id = new_id(time(1_800_000_000));
        assert!(id.starts_with("bg-20270115T080000-"), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
