//! Break-glass emergency access against moto with IAM authentication on: each person runs
//! credrot with their own key, identity comes from STS, requests live in SSM, access is a
//! real AssumeRole, and revocation is the aws:TokenIssueTime deny policy on the role.
//!
//! moto enforces the role's trust policy (it must name the requester's ARN; `root` is
//! refused), the callers' IAM policies, and an inline Deny on the role; it does not evaluate
//! the deny's `aws:TokenIssueTime` condition (every Deny applies), so the revocation test
//! checks that the session is refused and that the policy document on the role is exactly
//! AWS's documented one.

use crate::harness::{Key, Moto, WebhookServer, REGION};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use serde_json::Value;

const ROLE: &str = "break-glass-admin";
const ACCOUNT: &str = "123456789012";

/// The permissions docs/guide/break-glass.md lists for requesters and approvers.
const PERSON_ACTIONS: &[&str] = &[
    "sts:GetCallerIdentity",
    "ssm:PutParameter",
    "ssm:LabelParameterVersion",
    "ssm:GetParameterHistory",
    "ssm:GetParametersByPath",
    "iam:GetRole",
    "iam:GetGroup",
    "iam:PutRolePolicy",
    "sts:AssumeRole",
];

fn arn(user: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{user}")
}

struct World {
    moto: Moto,
    dir: tempfile::TempDir,
    hook: WebhookServer,
    alice: Key,
    bob: Key,
    carol: Key,
    mallory: Key,
}

/// alice may assume the role; bob (by ARN) and carol (group `oncall`) approve; mallory is
/// nobody in particular. The role's MaxSessionDuration is 2h.
fn world(extra: &str) -> World {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookServer::start(200);
    let [alice, bob, carol, mallory] =
        ["alice", "bob", "carol", "mallory"].map(|u| moto.create_identity(u, PERSON_ACTIONS));
    let iam = moto.iam();
    moto.rt.block_on(async {
        iam.create_group().group_name("oncall").send().await.unwrap();
        iam.add_user_to_group()
            .group_name("oncall")
            .user_name("carol")
            .send()
            .await
            .unwrap();
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": arn("alice")},
                "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]
            }]
        });
        iam.create_role()
            .role_name(ROLE)
            .assume_role_policy_document(trust.to_string())
            .max_session_duration(7200)
            .send()
            .await
            .unwrap();
        iam.put_role_policy()
            .role_name(ROLE)
            .policy_name("admin")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
    });
    std::fs::write(
        dir.path().join("services.toml"),
        format!(
            "[break_glass]\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/{ROLE}\"\napprovers = [\"{}\", \"oncall\"]\nparameter_prefix = \"/ops/break-glass\"\n{extra}\n[audit]\npath = \"audit.log\"\n\n[notify]\nwebhook = \"{}/hooks/TOKEN77\"\n",
            arn("bob"),
            hook.url
        ),
    )
    .unwrap();
    World {
        moto,
        dir,
        hook,
        alice,
        bob,
        carol,
        mallory,
    }
}

/// What a credrot run as `key` printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl World {
    fn run_at(&self, key: &Key, offset: &str, args: &[&str]) -> Run {
        let out = self
            .moto
            .credrot_process(self.dir.path())
            .env("AWS_ACCESS_KEY_ID", &key.id)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret)
            .env("CREDROT_CLOCK_OFFSET", offset)
            .arg("break-glass")
            .args(args)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    fn run(&self, key: &Key, args: &[&str]) -> Run {
        self.run_at(key, "0s", args)
    }

    /// A new request by alice; its id.
    fn request(&self, reason: &str) -> String {
        let out = self
            .moto
            .credrot_process(self.dir.path())
            .env("AWS_ACCESS_KEY_ID", &self.alice.id)
            .env("AWS_SECRET_ACCESS_KEY", &self.alice.secret)
            .args([
                "--output",
                "json",
                "break-glass",
                "request",
                "--reason",
                reason,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let request: Value = serde_json::from_str(&stdout).unwrap();
        request["id"].as_str().unwrap().to_string()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn notices(&self) -> Vec<Value> {
        self.hook.received().iter().map(|r| r.json()).collect()
    }

    fn status_of(&self, id: &str) -> String {
        let out = self
            .moto
            .credrot_process(self.dir.path())
            .args(["--output", "json", "break-glass", "list"])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["status"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// An SDK configuration signing with temporary credentials.
    fn session_config(&self, creds: &Value) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(credrot::aws::http_client())
            .region(Region::new(REGION))
            .endpoint_url(&self.moto.endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    creds["AccessKeyId"].as_str().unwrap(),
                    creds["SecretAccessKey"].as_str().unwrap(),
                    creds["SessionToken"].as_str().map(str::to_string),
                    None,
                    "test",
                )),
            )
            .build()
    }
}

fn refused(run: &Run, needle: &str) {
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("refused") && run.stderr.contains(needle),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("SecretAccessKey") && !run.stdout.contains("AWS_SECRET"));
}

#[test]
fn the_whole_flow_with_refusals_audit_and_webhook() {
    let w = world("");
    // No space in the reason: moto re-encodes a query body's spaces as '+' when it checks
    // the signature, and the Rust SDK sends %20, so an AssumeRole whose session tags hold a
    // space is refused as SignatureDoesNotMatch by moto (AWS accepts it). ';' is not a tag
    // character and becomes '_' in the tag, not in the request.
    let out = w.run(&w.alice, &["request", "--reason", "prod-db-down;INC-42"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("cannot label"), "{}", out.stderr);
    assert!(
        out.stderr.contains("MaxSessionDuration is 2h"),
        "max_duration (4h) is capped by the role: {}",
        out.stderr
    );
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(out.stdout.contains("status:     pending"), "{}", out.stdout);
    assert!(out
        .stdout
        .contains(&format!("requester:  {}", arn("alice"))));
    assert!(out.stdout.contains("duration:   2h"), "{}", out.stdout);

    refused(
        &w.run(&w.alice, &["approve", &id]),
        "cannot approve their own request",
    );
    refused(&w.run(&w.mallory, &["approve", &id]), "is not an approver");
    refused(
        &w.run(&w.alice, &["credentials", &id]),
        "not approved (0 of 1 approvals)",
    );
    assert_eq!(w.status_of(&id), "pending");

    // carol approves as a member of the approvers' group.
    let out = w.run(&w.carol, &["approve", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("status:     approved"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&arn("carol")));
    assert_eq!(w.status_of(&id), "approved");
    refused(&w.run(&w.bob, &["credentials", &id]), "only the requester");

    let out = w.run(
        &w.alice,
        &["credentials", &id, "--format", "credential-process"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let creds: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(creds["Version"], 1);
    let session = w.session_config(&creds);
    let who = w
        .moto
        .rt
        .block_on(
            aws_sdk_sts::Client::new(&session)
                .get_caller_identity()
                .send(),
        )
        .unwrap();
    assert_eq!(
        who.arn().unwrap(),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/break-glass-{id}")
    );
    // The role's own permissions apply.
    w.moto
        .rt
        .block_on(aws_sdk_iam::Client::new(&session).list_users().send())
        .unwrap();

    // Env output for `eval`, and the issue on record.
    let out = w.run(&w.alice, &["credentials", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("export AWS_SESSION_TOKEN="),
        "{}",
        out.stdout
    );
    let list = w
        .moto
        .credrot_process(w.dir.path())
        .args(["--output", "json", "break-glass", "list"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["issued"].as_array().unwrap().len(), 2);
    assert_eq!(list[0]["issued"][0]["access_key_id"], creds["AccessKeyId"]);
    assert_eq!(list[0]["approvals"][0]["by"], arn("carol"));

    // Every step, refused ones too, is an audit line and a notice; no secret in either.
    let audit = w.audit();
    let steps: Vec<(String, String, String)> = audit
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap().to_string(),
                l["caller"].as_str().unwrap().to_string(),
                l["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let step = |a: &str, who: &str, o: &str| (format!("break-glass-{a}"), arn(who), o.to_string());
    assert_eq!(
        steps,
        vec![
            step("request", "alice", "ok"),
            step("approve", "alice", "failed"),
            step("approve", "mallory", "failed"),
            step("credentials", "alice", "failed"),
            step("approve", "carol", "ok"),
            step("credentials", "bob", "failed"),
            step("credentials", "alice", "ok"),
            step("credentials", "alice", "ok"),
        ]
    );
    assert_eq!(audit[0]["store"], format!("ssm:/ops/break-glass/{id}"));
    // The request's own version is labelled, so SSM never drops it from the history.
    let history = w
        .moto
        .rt
        .block_on(
            w.moto
                .ssm()
                .get_parameter_history()
                .name(format!("/ops/break-glass/{id}"))
                .send(),
        )
        .unwrap();
    let first = &history.parameters()[0];
    assert_eq!(
        (first.version(), first.labels()),
        (1, &["request".to_string()][..])
    );
    assert_eq!(audit[0]["user"], "alice");
    assert_eq!(audit[6]["key_id"], creds["AccessKeyId"]);
    let notices = w.notices();
    assert_eq!(notices.len(), 8);
    assert_eq!(notices[0]["kind"], "break-glass");
    assert_eq!(notices[0]["step"], "request");
    assert_eq!(notices[0]["request"]["reason"], "prod-db-down;INC-42");
    assert_eq!(notices[1]["outcome"], "refused");
    assert_eq!(notices[4]["request"]["approvals"][0]["by"], arn("carol"));
    let log = std::fs::read_to_string(w.dir.path().join("audit.log")).unwrap();
    for text in [
        log,
        w.hook
            .received()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).to_string())
            .collect(),
    ] {
        assert!(!text.contains(creds["SecretAccessKey"].as_str().unwrap()));
        assert!(!text.contains(creds["SessionToken"].as_str().unwrap()));
    }
    crate::harness::credrot_command(w.dir.path())
        .args(["audit", "verify", "--path", "audit.log"])
        .assert()
        .success();

    // Past the approved window (2h from the approval), by credrot's clock.
    refused(
        &w.run_at(&w.alice, "3h", &["credentials", &id]),
        "access window ended",
    );
}

#[test]
fn an_expired_or_denied_request_cannot_be_used() {
    let w = world("request_ttl = \"1h\"\napprovals_needed = 1");
    let id = w.request("needs approval within the hour");
    refused(
        &w.run_at(&w.bob, "2h", &["approve", &id]),
        "expired unapproved",
    );
    assert_eq!(
        w.run_at(&w.alice, "2h", &["list"])
            .stdout
            .lines()
            .filter(|l| l.contains(&id) && l.contains("expired"))
            .count(),
        1
    );
    refused(
        &w.run_at(&w.alice, "2h", &["credentials", &id]),
        "not approved",
    );

    let id = w.request("second try");
    let out = w.run(&w.bob, &["deny", &id, "--reason", "use the runbook"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("status:     denied"), "{}", out.stdout);
    refused(&w.run(&w.carol, &["approve", &id]), "was denied");
    refused(&w.run(&w.alice, &["credentials", &id]), "was denied");
    refused(&w.run(&w.mallory, &["deny", &id]), "was denied");

    let out = w.run(&w.alice, &["approve", "bg-does-not-exist"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out
        .stderr
        .contains("no break-glass request 'bg-does-not-exist' under /ops/break-glass"));
}

#[test]
fn a_revoked_request_ends_the_session_and_cannot_be_used_again() {
    let w = world("");
    let id = w.request("revoke-me");
    assert_eq!(w.run(&w.bob, &["approve", &id]).code, 0);
    let out = w.run(&w.alice, &["credentials", &id, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let creds: Value = serde_json::from_str(&out.stdout).unwrap();
    let session = w.session_config(&creds);
    let session_iam = aws_sdk_iam::Client::new(&session);
    w.moto.rt.block_on(session_iam.list_users().send()).unwrap();

    refused(
        &w.run(&w.mallory, &["revoke", &id]),
        "neither an approver nor the requester",
    );
    let before = std::time::SystemTime::now();
    let out = w.run(&w.bob, &["revoke", &id]);
    let after = std::time::SystemTime::now();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("status:     revoked"), "{}", out.stdout);
    assert!(
        out.stderr.contains("AWSRevokeOlderSessions"),
        "{}",
        out.stderr
    );

    // The policy on the role is AWS's documented one, dated between the two clocks.
    let doc = w
        .moto
        .rt
        .block_on(
            w.moto
                .iam()
                .get_role_policy()
                .role_name(ROLE)
                .policy_name("AWSRevokeOlderSessions")
                .send(),
        )
        .unwrap()
        .policy_document()
        .to_string();
    let doc = urlencoding_decode(&doc);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let issued_before = doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .unwrap()
        .to_string();
    let at = humantime::parse_rfc3339(&issued_before).unwrap();
    assert!(
        at > before - std::time::Duration::from_secs(1)
            && at <= after + std::time::Duration::from_secs(2),
        "{issued_before}"
    );
    assert_eq!(
        doc,
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Deny",
                "Action": ["*"],
                "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": issued_before}}
            }]
        })
    );
    // moto applies the Deny (without evaluating its condition): the session is refused.
    let err = w
        .moto
        .rt
        .block_on(session_iam.list_users().send())
        .unwrap_err();
    assert!(format!("{err:?}").contains("AccessDenied"), "{err:?}");

    refused(&w.run(&w.alice, &["credentials", &id]), "was revoked");
    refused(&w.run(&w.carol, &["approve", &id]), "was revoked");
    let audit = w.audit();
    let last = audit
        .iter()
        .rev()
        .find(|l| l["action"] == "break-glass-revoke" && l["outcome"] == "ok")
        .unwrap();
    assert_eq!(last["caller"], arn("bob"));
    let notices = w.notices();
    assert!(notices.iter().any(|n| n["step"] == "revoke"
        && n["outcome"] == "ok"
        && n["request"]["revoked_by"] == arn("bob")));
}

#[test]
fn break_glass_needs_its_section_and_checks_input_before_aws() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.toml"), "").unwrap();
    let tripwire = crate::harness::Tripwire::new();
    let run = |args: &[&str]| {
        crate::harness::credrot_command(dir.path())
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example")
            .args(["--endpoint-url", &tripwire.endpoint, "break-glass"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [break_glass] section"));
    std::fs::write(
        dir.path().join("services.toml"),
        "[break_glass]\nrole_arn = \"arn:aws:iam::123456789012:role/bg\"\napprovers = [\"oncall\"]\nmax_duration = \"1h\"\n",
    )
    .unwrap();
    let out = run(&["request", "--reason", "x", "--duration", "2h"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed are 15m to 1h"));
    let out = run(&["request", "--reason", " "]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason must say why"));
    std::fs::write(
        dir.path().join("services.toml"),
        "[break_glass]\nrole_arn = \"arn:aws:iam::123456789012:user/bg\"\napprovers = [\"oncall\"]\n",
    )
    .unwrap();
    let out = run(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("services.toml:2:12: [break_glass] role_arn")
            && stderr.contains("not an IAM role ARN"),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("services.toml"),
        "[break_glass]\nrole_arn = \"arn:aws:iam::123456789012:role/bg\"\napprovers = [\"arn:aws:iam::123456789012:user/a\"]\napprovals_needed = 2\n",
    )
    .unwrap();
    let out = run(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only 1 approvers are listed"));
    assert!(!tripwire.tripped());
}

/// IAM returns policy documents URL-encoded (moto too).
fn urlencoding_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
