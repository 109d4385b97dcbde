//! A break-glass request as the versions of its SSM parameter tell it: every step (request,
//! approve, deny, issue, revoke) is one version, and the request's state is the fold of all
//! of them in version order. Nothing is overwritten, so two approvers acting at once both
//! count, and every machine folds the same history to the same state.
//!
//! The fold is the authority: a step that is not allowed (an approval by the requester or
//! by someone who is not an approver, credentials issued to anyone but the requester, a
//! step after a denial or revocation) is ignored and listed in `ignored`, so writing such a
//! version by hand gains nothing. Where SSM names who wrote a version
//! (`LastModifiedUser`, an ARN in AWS), a version whose `by` says otherwise is ignored too.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One step, as stored in one version of the request's parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// The request.
    Request {
        /// The request id.
        id: String,
        /// Who asks (STS GetCallerIdentity ARN).
        by: String,
        /// When, Unix seconds.
        at: u64,
        /// Why.
        reason: String,
        /// How long the access lasts once approved, seconds.
        duration_secs: u64,
        /// Until when it may be approved, Unix seconds.
        approve_by: u64,
        /// The role to assume.
        role_arn: String,
        /// How many approvals are needed.
        approvals_needed: u32,
    },
    /// An approval.
    Approve {
        /// Who approves.
        by: String,
        /// When, Unix seconds.
        at: u64,
    },
    /// A denial (final).
    Deny {
        /// Who denies.
        by: String,
        /// When, Unix seconds.
        at: u64,
        /// Why, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Credentials were issued to the requester.
    Issue {
        /// Who got them (the requester).
        by: String,
        /// When, Unix seconds.
        at: u64,
        /// The temporary access key id (never its secret).
        access_key_id: String,
        /// When they expire, Unix seconds.
        expires_at: u64,
    },
    /// The access was revoked (final).
    Revoke {
        /// Who revoked it.
        by: String,
        /// When, Unix seconds.
        at: u64,
    },
}

impl Step {
    /// Who took the step.
    pub fn by(&self) -> &str {
        match self {
            Step::Request { by, .. }
            | Step::Approve { by, .. }
            | Step::Deny { by, .. }
            | Step::Issue { by, .. }
            | Step::Revoke { by, .. } => by,
        }
    }

    /// The step's name: `request`, `approve`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Step::Request { .. } => "request",
            Step::Approve { .. } => "approve",
            Step::Deny { .. } => "deny",
            Step::Issue { .. } => "issue",
            Step::Revoke { .. } => "revoke",
        }
    }
}

/// One stored version: the step and who SSM says wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The parameter version.
    pub version: i64,
    /// The version's value.
    pub value: String,
    /// `LastModifiedUser` of the version, when SSM names one (an ARN).
    pub written_by: Option<String>,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for approvals.
    Pending,
    /// Approved; credentials may be had until the window ends.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Not approved in time, or the approved window is over.
    Expired,
    /// Revoked.
    Revoked,
}

impl Status {
    /// The name, as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
        }
    }
}

/// An approval that counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The approver.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
}

/// Credentials issued for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The temporary access key id.
    pub access_key_id: String,
    /// When, RFC 3339.
    pub at: String,
    /// When they expire, RFC 3339.
    pub expires_at: String,
}

/// A request, folded from its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// The id.
    pub id: String,
    /// Who asked.
    pub requester: String,
    /// Why.
    pub reason: String,
    /// The role.
    pub role_arn: String,
    /// How long the access lasts once approved.
    #[serde(serialize_with = "human")]
    pub duration: Duration,
    /// When it was made.
    #[serde(serialize_with = "rfc3339")]
    pub requested_at: SystemTime,
    /// Until when it may be approved.
    #[serde(serialize_with = "rfc3339")]
    pub approve_by: SystemTime,
    /// Approvals needed.
    pub approvals_needed: u32,
    /// The approvals that counted.
    pub approvals: Vec<Approval>,
    /// When the last needed approval came: the access window starts.
    #[serde(serialize_with = "rfc3339_opt")]
    pub approved_at: Option<SystemTime>,
    /// Who denied it, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<String>,
    /// The denial's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_reason: Option<String>,
    /// Who revoked it, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// When it was revoked.
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<SystemTime>,
    /// Credentials issued.
    pub issued: Vec<Issued>,
    /// Versions that did not count, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

fn human<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&show(*t)),
        None => s.serialize_none(),
    }
}

/// RFC 3339 seconds.
pub fn show(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Unix seconds of `t`.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// `t` from Unix seconds.
pub fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The identity an ARN stands for, for comparing people: an IAM user without its path, an
/// assumed-role session (role and session name), anything else as written.
pub fn principal(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 {
        return arn.to_string();
    }
    let resource = parts[5];
    if let Some(rest) = resource.strip_prefix("user/") {
        let name = rest.rsplit('/').next().unwrap_or(rest);
        return format!("arn:{}:iam::{}:user/{name}", parts[1], parts[4]);
    }
    arn.to_string()
}

/// Whether two ARNs are the same person.
pub fn same_person(a: &str, b: &str) -> bool {
    principal(a) == principal(b)
}

impl Request {
    /// Fold `versions` (in any order; sorted here). `is_approver` says whether an ARN may
    /// approve, deny and revoke.
    pub fn fold(
        versions: &[Version],
        is_approver: &dyn Fn(&str) -> bool,
    ) -> Result<Request, String> {
        let mut versions: Vec<&Version> = versions.iter().collect();
        versions.sort_by_key(|v| v.version);
        let mut steps = Vec::new();
        let mut ignored = Vec::new();
        for v in versions {
            match serde_json::from_str::<Step>(&v.value) {
                Ok(step) => {
                    let forged = v
                        .written_by
                        .as_deref()
                        .filter(|w| w.starts_with("arn:"))
                        .is_some_and(|w| !same_person(w, step.by()));
                    if forged {
                        ignored.push(format!(
                            "version {}: {} by {} was written by {}",
                            v.version,
                            step.name(),
                            step.by(),
                            v.written_by.as_deref().unwrap_or_default()
                        ));
                    } else {
                        steps.push((v.version, step));
                    }
                }
                Err(e) => ignored.push(format!(
                    "version {}: not a break-glass step ({e})",
                    v.version
                )),
            }
        }
        let mut steps = steps.into_iter();
        let Some((
            _,
            Step::Request {
                id,
                by,
                at,
                reason,
                duration_secs,
                approve_by,
                role_arn,
                approvals_needed,
            },
        )) = steps.next()
        else {
            return Err("its first version is not a break-glass request".to_string());
        };
        let mut request = Request {
            id,
            requester: by,
            reason,
            role_arn,
            duration: Duration::from_secs(duration_secs),
            requested_at: time(at),
            approve_by: time(approve_by),
            approvals_needed,
            approvals: Vec::new(),
            approved_at: None,
            denied_by: None,
            deny_reason: None,
            revoked_by: None,
            revoked_at: None,
            issued: Vec::new(),
            ignored,
        };
        for (version, step) in steps {
            if let Err(why) = request.apply(&step, is_approver) {
                request.ignored.push(format!(
                    "version {version}: {} by {}: {why}",
                    step.name(),
                    step.by()
                ));
            }
        }
        Ok(request)
    }

    fn closed(&self) -> Option<&'static str> {
        if self.revoked_by.is_some() {
            Some("the request was revoked")
        } else if self.denied_by.is_some() {
            Some("the request was denied")
        } else {
            None
        }
    }

    /// Whether `step` may be taken now; the error says why not.
    pub fn check(&self, step: &Step, is_approver: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if let Some(closed) = self.closed() {
            return Err(closed.to_string());
        }
        let by = step.by();
        match step {
            Step::Request { .. } => Err("a request cannot be made twice".to_string()),
            Step::Approve { at, .. } => {
                if same_person(by, &self.requester) {
                    return Err("the requester cannot approve their own request".to_string());
                }
                if !is_approver(by) {
                    return Err(format!("{by} is not an approver"));
                }
                if self.approvals.iter().any(|a| same_person(&a.by, by)) {
                    return Err(format!("{by} has already approved it"));
                }
                if self.approved_at.is_some() {
                    return Err("it is already approved".to_string());
                }
                if time(*at) > self.approve_by {
                    return Err(format!(
                        "it expired unapproved at {}",
                        show(self.approve_by)
                    ));
                }
                Ok(())
            }
            Step::Deny { .. } => {
                if !is_approver(by) || same_person(by, &self.requester) {
                    return Err(format!("{by} is not an approver of this request"));
                }
                Ok(())
            }
            Step::Issue { at, .. } => {
                if !same_person(by, &self.requester) {
                    return Err(format!(
                        "only the requester ({}) can have its credentials",
                        self.requester
                    ));
                }
                let Some(end) = self.window_end() else {
                    return Err(format!(
                        "it is not approved ({} of {} approvals)",
                        self.approvals.len(),
                        self.approvals_needed
                    ));
                };
                if time(*at) >= end {
                    return Err(format!("its access window ended at {}", show(end)));
                }
                Ok(())
            }
            Step::Revoke { .. } => {
                if !is_approver(by) && !same_person(by, &self.requester) {
                    return Err(format!("{by} is neither an approver nor the requester"));
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, step: &Step, is_approver: &dyn Fn(&str) -> bool) -> Result<(), String> {
        self.check(step, is_approver)?;
        match step {
            Step::Request { .. } => {}
            Step::Approve { by, at } => {
                self.approvals.push(Approval {
                    by: by.clone(),
                    at: show(time(*at)),
                });
                if self.approvals.len() >= self.approvals_needed as usize {
                    self.approved_at = Some(time(*at));
                }
            }
            Step::Deny { by, reason, .. } => {
                self.denied_by = Some(by.clone());
                self.deny_reason = reason.clone();
            }
            Step::Issue {
                at,
                access_key_id,
                expires_at,
                ..
            } => self.issued.push(Issued {
                access_key_id: access_key_id.clone(),
                at: show(time(*at)),
                expires_at: show(time(*expires_at)),
            }),
            Step::Revoke { by, at } => {
                self.revoked_by = Some(by.clone());
                self.revoked_at = Some(time(*at));
            }
        }
        Ok(())
    }

    /// When the access ends, once approved.
    pub fn window_end(&self) -> Option<SystemTime> {
        self.approved_at.map(|a| a + self.duration)
    }

    /// Where it stands at `now`.
    pub fn status(&self, now: SystemTime) -> Status {
        if self.revoked_by.is_some() {
            Status::Revoked
        } else if self.denied_by.is_some() {
            Status::Denied
        } else if let Some(end) = self.window_end() {
            if now >= end {
                Status::Expired
            } else {
                Status::Approved
            }
        } else if now > self.approve_by {
            Status::Expired
        } else {
            Status::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
    const BOB: &str = "arn:aws:iam::123456789012:user/ops/bob";
    const CAROL: &str = "arn:aws:iam::123456789012:user/carol";
    const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";

    fn approver(arn: &str) -> bool {
        same_person(arn, BOB) || same_person(arn, CAROL) || same_person(arn, ALICE)
    }

    fn v(version: i64, step: &Step) -> Version {
        Version {
            version,
            value: serde_json::to_string(step).unwrap(),
            written_by: None,
        }
    }

    fn request(needed: u32) -> Step {
        Step::Request {
            id: "bg-1".into(),
            by: ALICE.into(),
            at: 1000,
            reason: "prod down".into(),
            duration_secs: 3600,
            approve_by: 1000 + 600,
            role_arn: "arn:aws:iam::123456789012:role/bg".into(),
            approvals_needed: needed,
        }
    }

    fn approve(by: &str, at: u64) -> Step {
        Step::Approve { by: by.into(), at }
    }

    #[test]
    fn approvals_count_once_per_approver_and_never_the_requesters() {
        let history = [
            v(1, &request(2)),
            v(2, &approve(ALICE, 1010)),
            v(3, &approve("arn:aws:iam::123456789012:user/bob", 1020)),
            v(4, &approve(BOB, 1030)),
            v(5, &approve(MALLORY, 1040)),
        ];
        let r = Request::fold(&history, &approver).unwrap();
        assert_eq!(r.approvals.len(), 1, "{r:?}");
        assert_eq!(r.status(time(1050)), Status::Pending);
        assert_eq!(r.ignored.len(), 3, "{:?}", r.ignored);
        assert!(r.ignored[0].contains("cannot approve their own"));
        assert!(
            r.ignored[1].contains("already approved"),
            "a path does not make another person"
        );
        assert!(r.ignored[2].contains("not an approver"));
        let mut more = history.to_vec();
        more.push(v(6, &approve(CAROL, 1060)));
        let r = Request::fold(&more, &approver).unwrap();
        assert_eq!(r.status(time(1070)), Status::Approved);
        assert_eq!(r.window_end(), Some(time(1060 + 3600)));
        assert_eq!(r.status(time(1060 + 3600)), Status::Expired);
    }

    #[test]
    fn late_approvals_denials_and_revocations_close_the_request() {
        let late = [v(1, &request(1)), v(2, &approve(BOB, 1601))];
        let r = Request::fold(&late, &approver).unwrap();
        assert_eq!(r.status(time(1700)), Status::Expired);
        assert!(r.ignored[0].contains("expired unapproved"));

        let denied = [
            v(1, &request(1)),
            v(
                2,
                &Step::Deny {
                    by: CAROL.into(),
                    at: 1100,
                    reason: None,
                },
            ),
            v(3, &approve(BOB, 1200)),
        ];
        let r = Request::fold(&denied, &approver).unwrap();
        assert_eq!(r.status(time(1300)), Status::Denied);
        assert!(r.ignored[0].contains("was denied"));

        let revoked = [
            v(1, &request(1)),
            v(2, &approve(BOB, 1100)),
            v(
                3,
                &Step::Revoke {
                    by: ALICE.into(),
                    at: 1200,
                },
            ),
        ];
        let r = Request::fold(&revoked, &approver).unwrap();
        assert_eq!(r.status(time(1300)), Status::Revoked);
        let issue = Step::Issue {
            by: ALICE.into(),
            at: 1300,
            access_key_id: "ASIA1".into(),
            expires_at: 2000,
        };
        assert!(r.check(&issue, &approver).unwrap_err().contains("revoked"));
    }

    #[test]
    fn only_the_requester_gets_credentials_within_the_window() {
        let history = [v(1, &request(1)), v(2, &approve(BOB, 1100))];
        let r = Request::fold(&history, &approver).unwrap();
        let issue = |by: &str, at| Step::Issue {
            by: by.into(),
            at,
            access_key_id: "ASIA1".into(),
            expires_at: at + 900,
        };
        assert!(r.check(&issue(ALICE, 1200), &approver).is_ok());
        assert!(r
            .check(&issue(BOB, 1200), &approver)
            .unwrap_err()
            .contains("only the requester"));
        assert!(r
            .check(&issue(ALICE, 1100 + 3600), &approver)
            .unwrap_err()
            .contains("window ended"));
        let pending = Request::fold(&history[..1], &approver).unwrap();
        assert!(pending
            .check(&issue(ALICE, 1200), &approver)
            .unwrap_err()
            .contains("not approved"));
    }

    #[test]
    fn a_version_written_by_someone_else_than_its_by_is_ignored() {
        let mut forged = v(2, &approve(BOB, 1100));
        forged.written_by = Some(ALICE.into());
        let r = Request::fold(&[v(1, &request(1)), forged], &approver).unwrap();
        assert!(r.approvals.is_empty());
        assert!(r.ignored[0].contains("was written by"), "{:?}", r.ignored);
        let mut honest = v(2, &approve(BOB, 1100));
        honest.written_by = Some(BOB.into());
        let r = Request::fold(&[v(1, &request(1)), honest], &approver).unwrap();
        assert_eq!(r.approvals.len(), 1);
        // moto and other emulators say N/A: the step's own `by` is then all there is.
        let mut unknown = v(2, &approve(BOB, 1100));
        unknown.written_by = Some("N/A".into());
        assert_eq!(
            Request::fold(&[v(1, &request(1)), unknown], &approver)
                .unwrap()
                .approvals
                .len(),
            1
        );
        assert!(Request::fold(&[v(1, &approve(BOB, 1))], &approver).is_err());
    }
}
