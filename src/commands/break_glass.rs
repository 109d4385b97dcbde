//! `credrot break-glass ...`: glue between the command line, [`crate::break_glass`], the
//! audit log and the webhook. Every step, refused ones included, writes an audit line and
//! POSTs a notice.

use super::context::{load_aws, runtime};
use crate::audit::{AuditError, AuditFile, AuditLog, CloudWatchSink, RunInfo};
use crate::break_glass::cli::BreakGlassCommand;
use crate::break_glass::{
    arn_name, check_duration, check_reason, BreakGlass, BreakGlassError, Outcome, Request,
    SdkBreakGlass,
};
use crate::cli::{CredentialFormat, GlobalArgs, OutputFormat};
use crate::config::Config;
use crate::error::Error;
use crate::output;
use crate::rotation::{Event, EventSink};
use crate::session::{self, Format};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;

/// The webhook body of one break-glass step (never a secret).
#[derive(Serialize)]
struct Notice<'a> {
    kind: &'static str,
    step: &'static str,
    outcome: &'static str,
    request_id: &'a str,
    caller: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<&'a Request>,
}

/// Run `credrot break-glass ACTION`.
pub(super) fn run(
    config: &Config,
    global: &GlobalArgs,
    action: &BreakGlassCommand,
) -> Result<(), Error> {
    let settings = config.break_glass.as_ref().ok_or_else(|| {
        Error::Usage(format!(
            "no [break_glass] section in {}; see docs/guide/break-glass.md",
            config.file.display()
        ))
    })?;
    // Checked before any AWS call.
    if let BreakGlassCommand::Request { reason, duration } = action {
        check_reason(reason)?;
        if let Some(d) = duration {
            check_duration(settings, *d)?;
        }
    }
    let audit_file = match config.audit.as_ref().and_then(|a| a.path.as_deref()) {
        Some(path) if !matches!(action, BreakGlassCommand::List) => {
            Some(AuditFile::open(path).map_err(|e| Error::Usage(e.to_string()))?)
        }
        _ => None,
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        let aws = load_aws(config, global, None).await?;
        let api = SdkBreakGlass::new(&aws);
        let bg = BreakGlass {
            config: settings,
            aws: &api,
        };
        let caller = bg.caller().await?;
        let (step, id, result) = match action {
            BreakGlassCommand::List => {
                let requests = bg.list().await?;
                write_list(&requests, global.output)?;
                return Ok::<_, Error>(None);
            }
            BreakGlassCommand::Request { reason, duration } => (
                "request",
                String::new(),
                bg.request(&caller, reason.trim(), *duration).await,
            ),
            BreakGlassCommand::Approve { id } => {
                ("approve", id.clone(), bg.approve(&caller, id).await)
            }
            BreakGlassCommand::Deny { id, reason } => (
                "deny",
                id.clone(),
                bg.deny(&caller, id, reason.as_deref()).await,
            ),
            BreakGlassCommand::Credentials { id, .. } | BreakGlassCommand::Exec { id, .. } => {
                ("credentials", id.clone(), bg.credentials(&caller, id).await)
            }
            BreakGlassCommand::Revoke { id } => {
                ("revoke", id.clone(), bg.revoke(&caller, id).await)
            }
        };
        let id = match &result {
            Ok(o) => o.request.id.clone(),
            Err(_) => id,
        };
        let audited = audit(config, &aws, audit_file, &caller, step, &id, &bg, &result).await;
        notify(config, step, &id, &caller, &result).await;
        if let Err(e) = audited {
            // The step is done; the missing line must not go unnoticed.
            tracing::error!("audit: {e}");
            if result.is_ok() {
                eprintln!("credrot: error: {e}");
            }
        }
        Ok(Some(result))
    })?;
    let Some(result) = result else {
        return Ok(());
    };
    let outcome = result?;
    if let Some(note) = &outcome.note {
        eprintln!("credrot: {note}");
    }
    match action {
        BreakGlassCommand::Credentials { format, .. } => {
            let credentials = outcome
                .credentials
                .as_ref()
                .expect("credentials were issued");
            let format = match format {
                CredentialFormat::Env => Format::Env,
                CredentialFormat::Json => Format::Json,
                CredentialFormat::CredentialProcess => Format::CredentialProcess,
            };
            let mut out = std::io::stdout().lock();
            out.write_all(session::render(credentials, format).as_bytes())?;
            out.flush()?;
            Ok(())
        }
        BreakGlassCommand::Exec { command, .. } => {
            let credentials = outcome
                .credentials
                .as_ref()
                .expect("credentials were issued");
            let (program, arguments) = command
                .split_first()
                .ok_or_else(|| Error::Usage("exec needs a COMMAND to run".into()))?;
            super::exec::exec_with(program, arguments, credentials)
        }
        _ => write_request(&outcome, global.output),
    }
}

/// One audit line for the step, when `[audit]` is configured.
#[allow(clippy::too_many_arguments)]
async fn audit(
    config: &Config,
    aws: &crate::aws::AwsContext,
    file: Option<AuditFile>,
    caller: &str,
    step: &'static str,
    id: &str,
    bg: &BreakGlass<'_>,
    result: &Result<Outcome, BreakGlassError>,
) -> Result<(), Error> {
    let Some(audit) = &config.audit else {
        return Ok(());
    };
    let run_id = format!(
        "break-glass-{step}-{}",
        if id.is_empty() { "new" } else { id }
    );
    let cloudwatch = match &audit.cloudwatch {
        Some(target) => Some(
            CloudWatchSink::start(
                Arc::new(aws.logs()),
                &target.group,
                target.stream.as_deref().unwrap_or(&run_id),
            )
            .await
            .map_err(AuditError::from)?,
        ),
        None => None,
    };
    let log = AuditLog::new(
        RunInfo {
            run_id,
            caller: caller.to_string(),
        },
        file,
        cloudwatch,
    );
    let requester = match result {
        Ok(o) => o.request.requester.clone(),
        Err(_) => caller.to_string(),
    };
    log.record(Event {
        account: None,
        user: arn_name(&requester).to_string(),
        service: None,
        action: match step {
            "request" => "break-glass-request",
            "approve" => "break-glass-approve",
            "deny" => "break-glass-deny",
            "credentials" => "break-glass-credentials",
            _ => "break-glass-revoke",
        },
        key_id: result
            .as_ref()
            .ok()
            .and_then(|o| o.credentials.as_ref())
            .map(|c| c.key.id.clone()),
        store: (!id.is_empty()).then(|| format!("ssm:{}", bg.parameter(id))),
        outcome: if result.is_ok() { "ok" } else { "failed" },
        error: result.as_ref().err().map(|e| e.to_string()),
    });
    log.finish().await?;
    Ok(())
}

/// POST the step's notice, when `[notify]` is configured; a failure is a warning (the
/// step is done, and emergency access must not wait on a chat service).
async fn notify(
    config: &Config,
    step: &'static str,
    id: &str,
    caller: &str,
    result: &Result<Outcome, BreakGlassError>,
) {
    let Some(notify) = &config.notify else {
        return;
    };
    let notice = Notice {
        kind: "break-glass",
        step,
        outcome: match result {
            Ok(_) => "ok",
            Err(BreakGlassError::Refused { .. }) => "refused",
            Err(_) => "failed",
        },
        request_id: id,
        caller,
        time: session::rfc3339(crate::clock::now()),
        error: result.as_ref().err().map(|e| e.to_string()),
        request: result.as_ref().ok().map(|o| &o.request),
    };
    let body = serde_json::to_vec(&notice).expect("the notice serializes");
    match notify.webhook.post(body, notify.timeout).await {
        Ok(()) => tracing::info!(webhook = %notify.webhook.target(), "break-glass notice sent"),
        Err(e) => eprintln!("credrot: warning: could not send the break-glass notice: {e}"),
    }
}

fn write_request(outcome: &Outcome, format: OutputFormat) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Json {
        output::write_json(&mut out, &outcome.request)?;
        return Ok(());
    }
    let r = &outcome.request;
    let now = crate::clock::now();
    writeln!(out, "id:         {}", r.id)?;
    writeln!(out, "status:     {}", r.status(now).as_str())?;
    writeln!(out, "requester:  {}", r.requester)?;
    writeln!(out, "reason:     {}", r.reason)?;
    writeln!(out, "role:       {}", r.role_arn)?;
    writeln!(
        out,
        "duration:   {}",
        humantime::format_duration(r.duration)
    )?;
    writeln!(
        out,
        "approvals:  {} of {}{}",
        r.approvals.len(),
        r.approvals_needed,
        r.approvals
            .iter()
            .map(|a| format!(" {}", a.by))
            .collect::<String>()
    )?;
    match r.window_end() {
        Some(end) => writeln!(out, "access:     until {}", session::rfc3339(end))?,
        None => writeln!(out, "approve by: {}", session::rfc3339(r.approve_by))?,
    }
    writeln!(out, "stored in:  ssm:{}", outcome.parameter)?;
    Ok(())
}

fn write_list(requests: &[Request], format: OutputFormat) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let now = crate::clock::now();
    if format == OutputFormat::Json {
        #[derive(Serialize)]
        struct Listed<'a> {
            status: &'static str,
            #[serde(flatten)]
            request: &'a Request,
        }
        let listed: Vec<Listed> = requests
            .iter()
            .map(|r| Listed {
                status: r.status(now).as_str(),
                request: r,
            })
            .collect();
        output::write_json(&mut out, &listed)?;
        return Ok(());
    }
    let mut t = output::table(&["ID", "REQUESTER", "STATUS", "APPROVALS", "UNTIL", "REASON"]);
    for r in requests {
        t.add_row(vec![
            r.id.clone(),
            r.requester.clone(),
            r.status(now).as_str().to_string(),
            format!("{}/{}", r.approvals.len(), r.approvals_needed),
            r.window_end()
                .map(session::rfc3339)
                .unwrap_or_else(|| "-".into()),
            r.reason.clone(),
        ]);
    }
    writeln!(out, "{t}")?;
    Ok(())
}
