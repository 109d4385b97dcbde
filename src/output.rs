//! Rendering data for stdout: tables for people, JSON for machines. Nothing here writes a
//! secret: `--print-secrets` is a store ([`crate::store::SecretPrinter`]), so that a key it
//! cannot print is rolled back.

use crate::accounts::AccountFailure;
use crate::aws::CallReport;
use crate::cli::OutputFormat;
use crate::config::{default_title, Config, Service, StoreConfig};
use crate::rotation::{Outcome, UserReport};
use crate::store::TemplateValues;
use comfy_table::{presets, ColumnConstraint, ContentArrangement, Table, Width};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

/// A table for people: on a terminal it fits the terminal's width (long cells wrap);
/// anywhere else (a pipe, a file, CI logs) each row stays on one line, so the layout does
/// not depend on where it is read.
/// Only these columns wrap; ids, names and verdicts stay whole (to copy and to grep).
pub(crate) fn table(header: &[&str]) -> Table {
    const WRAPPING: [&str; 3] = ["STORES", "HELD BY", "LAST USED"];
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    // Off a terminal nothing wraps, so no column needs a minimum width.
    let on_terminal = table.width().is_some();
    for (i, name) in header.iter().enumerate() {
        let constraint = match WRAPPING.contains(name) {
            true if on_terminal => ColumnConstraint::LowerBoundary(Width::Fixed(20)),
            true => continue,
            false => ColumnConstraint::ContentWidth,
        };
        if let Some(column) = table.column_mut(i) {
            column.set_constraint(constraint);
        }
    }
    table
}

pub(crate) fn write_json(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// `credrot list`.
pub fn write_services(
    out: &mut dyn Write,
    config: &Config,
    format: OutputFormat,
) -> std::io::Result<()> {
    let services: Vec<&Service> = config.services.values().collect();
    if format == OutputFormat::Json {
        return write_json(out, &services);
    }
    let mut t = table(&["SERVICE", "IAM USER", "STORES", "MAX AGE"]);
    for s in services {
        t.add_row(vec![
            s.name.clone(),
            s.iam_user.clone(),
            s.stores
                .iter()
                .map(|c| expanded_summary(c, s))
                .collect::<Vec<_>>()
                .join(", "),
            s.policy
                .max_age
                .as_ref()
                .map(|d| d.text.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    writeln!(out, "{t}")
}

/// The service's values in a store's templates (`{service}`, `{user}`, the default
/// 1Password title): where the key actually goes.
fn templates_of(service: &Service) -> TemplateValues<'_> {
    TemplateValues {
        user: &service.iam_user,
        service: Some(&service.name),
        account: None,
    }
}

/// A store's summary with the service's values substituted.
fn expanded_summary(store: &StoreConfig, service: &Service) -> String {
    let summary = match store {
        StoreConfig::OnePassword(c) if c.title.is_none() => {
            format!("1password:{}/{}", c.vault, default_title(true))
        }
        _ => store.summary(),
    };
    templates_of(service).apply(&summary)
}

/// `credrot show SERVICE`.
pub fn write_service(
    out: &mut dyn Write,
    service: &Service,
    format: OutputFormat,
) -> std::io::Result<()> {
    if format == OutputFormat::Json {
        return write_json(out, service);
    }
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    writeln!(out, "service:      {}", service.name)?;
    writeln!(
        out,
        "description:  {}",
        or_dash(service.description.as_deref())
    )?;
    writeln!(out, "iam_user:     {}", service.iam_user)?;
    writeln!(out, "tags:         {}", service.tags.join(", "))?;
    writeln!(
        out,
        "max_age:      {}",
        or_dash(service.policy.max_age.as_ref().map(|d| d.text.as_str()))
    )?;
    crate::monitor::write_policy_lines(out, &service.policy)?;
    writeln!(out, "region:       {}", or_dash(service.region.as_deref()))?;
    writeln!(out, "stores:")?;
    let values = templates_of(service);
    for store in &service.stores {
        let mut fields = serde_json::to_value(store).expect("store configs serialize");
        if let (StoreConfig::OnePassword(c), Some(map)) = (store, fields.as_object_mut()) {
            if c.title.is_none() {
                map.insert("title".into(), default_title(true).into());
            }
        }
        let fields = fields
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "kind")
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str()
                        .map(|text| values.apply(text))
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(out, "  - {} {fields}", store.kind())?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Summary<'a> {
    dry_run: bool,
    rotated: usize,
    failed: usize,
    planned: usize,
    fresh: usize,
    synced: usize,
    retiring: usize,
    stuck: usize,
    busy: usize,
    /// Users this run left to another run (`busy`): not converged, by name.
    unconverged: Vec<&'a str>,
    aws_calls: &'a CallReport,
    /// Per account, in a run over `[accounts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<&'a [AccountTotal]>,
    users: &'a [UserReport],
}

/// One account's part of a run over `[accounts]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountTotal {
    /// The account id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Users worked on.
    pub users: usize,
    /// Users rotated.
    pub rotated: usize,
    /// Users a dry run would rotate.
    pub planned: usize,
    /// Users that failed.
    pub failed: usize,
    /// Why the run could not work in the account at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The per-account totals: every account with users, and every account that failed.
pub fn account_totals(reports: &[UserReport], failures: &[AccountFailure]) -> Vec<AccountTotal> {
    let mut totals: BTreeMap<String, AccountTotal> = BTreeMap::new();
    for r in reports {
        let Some(id) = &r.account else { continue };
        let total = totals.entry(id.clone()).or_insert_with(|| AccountTotal {
            id: id.clone(),
            name: r.account_name.clone().unwrap_or_else(|| id.clone()),
            users: 0,
            rotated: 0,
            planned: 0,
            failed: 0,
            error: None,
        });
        total.users += 1;
        total.rotated += usize::from(r.outcome == Outcome::Rotated);
        total.planned += usize::from(r.outcome == Outcome::Planned);
        total.failed += usize::from(r.outcome == Outcome::Failed);
    }
    for f in failures {
        totals.insert(
            f.account.id.clone(),
            AccountTotal {
                id: f.account.id.clone(),
                name: f.account.name.clone(),
                users: 0,
                rotated: 0,
                planned: 0,
                failed: 0,
                error: Some(f.error.clone()),
            },
        );
    }
    totals.into_values().collect()
}

/// How a user is named in summary lines: `ACCOUNT/user` in a run over `[accounts]`.
fn who(r: &UserReport) -> String {
    match &r.account {
        Some(account) => format!("{account}/{}", r.user),
        None => r.user.clone(),
    }
}

/// The summary after `update` or `rotate` (the plan, with --dry-run).
pub fn write_summary(
    out: &mut dyn Write,
    reports: &[UserReport],
    accounts: Option<&[AccountTotal]>,
    dry_run: bool,
    calls: &CallReport,
    format: OutputFormat,
) -> std::io::Result<()> {
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
    if format == OutputFormat::Json {
        return write_json(
            out,
            &Summary {
                dry_run,
                rotated: count(Outcome::Rotated),
                failed: count(Outcome::Failed),
                planned: count(Outcome::Planned),
                fresh: count(Outcome::Fresh),
                synced: count(Outcome::Synced),
                retiring: count(Outcome::Retiring),
                stuck: count(Outcome::Stuck),
                busy: count(Outcome::Busy),
                unconverged: reports
                    .iter()
                    .filter(|r| r.outcome == Outcome::Busy)
                    .map(|r| r.user.as_str())
                    .collect(),
                aws_calls: calls,
                accounts,
                users: reports,
            },
        );
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut header: Vec<&str> = Vec::new();
    if accounts.is_some() {
        header.push("ACCOUNT");
    }
    header.extend(if dry_run {
        [
            "USER",
            "CURRENT",
            "LAST",
            "WOULD DELETE",
            "WOULD CREATE",
            "STORES",
            "OUTCOME",
        ]
    } else {
        [
            "USER",
            "OLD CURRENT",
            "OLD LAST",
            "DELETED",
            "NEW KEY",
            "STORES",
            "OUTCOME",
        ]
    });
    let mut t = table(&header);
    for r in reports {
        let created = if dry_run && r.outcome == Outcome::Planned {
            "new key".to_string()
        } else {
            dash(&r.created)
        };
        let mut row: Vec<String> = r.account.iter().cloned().collect();
        row.extend([
            r.user.clone(),
            dash(&r.current_before),
            dash(&r.last_before),
            dash(&r.deleted),
            created,
            r.stores.join(", "),
            r.outcome.as_str().to_string(),
        ]);
        t.add_row(row);
    }
    writeln!(out, "{t}")?;
    if dry_run
        && reports
            .iter()
            .any(|r| r.outcome == Outcome::Planned && r.created.is_none())
    {
        writeln!(
            out,
            "WOULD CREATE \"new key\": a new access key for the user, written to each of its STORES and verified through STS; it becomes CURRENT and the CURRENT key becomes LAST"
        )?;
    }
    for r in reports.iter().filter(|r| !r.synced.is_empty()) {
        let verb = if dry_run {
            "would bring up to date"
        } else {
            "brought up to date"
        };
        writeln!(out, "{}: {verb}: {}", who(r), r.synced.join(", "))?;
    }
    for r in reports {
        for action in &r.actions {
            writeln!(out, "{}: {action}", who(r))?;
        }
        if let Some(note) = &r.note {
            writeln!(out, "{}: {} ({note})", who(r), r.outcome.as_str())?;
        }
    }
    for r in reports {
        for h in &r.hooks {
            match &h.error {
                None => writeln!(out, "{}: after_rotate {}: ok", who(r), h.hook)?,
                Some(e) => writeln!(
                    out,
                    "{}: after_rotate {}: FAILED (the rotation stands): {e}",
                    who(r),
                    h.hook
                )?,
            }
        }
    }
    for r in reports.iter().filter(|r| r.outcome == Outcome::Failed) {
        writeln!(
            out,
            "{}: {}",
            who(r),
            r.error.as_deref().unwrap_or("failed")
        )?;
    }
    for a in accounts.unwrap_or_default() {
        let name = if a.name == a.id {
            String::new()
        } else {
            format!(" ({})", a.name)
        };
        match &a.error {
            Some(e) => writeln!(
                out,
                "account {}{name}: FAILED, nothing changed there: {e}",
                a.id
            )?,
            None => writeln!(
                out,
                "account {}{name}: {}: {} {}, {} failed",
                a.id,
                crate::duration::count(a.users, "user"),
                if dry_run { a.planned } else { a.rotated },
                if dry_run { "planned" } else { "rotated" },
                a.failed
            )?,
        }
    }
    let others: String = [
        Outcome::Fresh,
        Outcome::Synced,
        Outcome::Retiring,
        Outcome::Stuck,
        Outcome::Busy,
    ]
    .into_iter()
    .filter(|&o| count(o) > 0)
    .map(|o| format!(", {} {}", count(o), o.as_str()))
    .collect();
    if dry_run {
        writeln!(
            out,
            "dry run: {} planned, {} failed{others}; nothing changed",
            count(Outcome::Planned),
            count(Outcome::Failed)
        )?;
    } else {
        writeln!(
            out,
            "{} rotated, {} failed{others}",
            count(Outcome::Rotated),
            count(Outcome::Failed)
        )?;
    }
    let busy = count(Outcome::Busy);
    if busy > 0 {
        writeln!(
            out,
            "{busy} {} left unconverged (busy): another run holds {}; run again once it has finished (--fail-on busy makes this exit 3)",
            if busy == 1 { "user" } else { "users" },
            if busy == 1 { "it" } else { "them" },
        )?;
    }
    let rotated = count(Outcome::Rotated);
    let per_user = if rotated > 0 {
        format!(
            " ({:.2} per rotated user)",
            calls.calls as f64 / rotated as f64
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "AWS: {}{per_user}, {} retried by the SDK",
        crate::duration::count(calls.calls as usize, "call"),
        calls.retries
    )
}

/// `credrot status`: one row per key, the verdict on the user's first row, reasons below.
pub fn write_status(
    out: &mut dyn Write,
    statuses: &[crate::status::UserStatus],
    format: OutputFormat,
) -> std::io::Result<()> {
    if format == OutputFormat::Json {
        return write_json(out, &statuses);
    }
    let mut t = table(&[
        "USER",
        "KEY",
        "ROLE",
        "STATUS",
        "AGE",
        "LAST USED",
        "HELD BY",
        "VERDICT",
    ]);
    // `ACCOUNT/user` in a run over `[accounts]`.
    let user = |s: &crate::status::UserStatus| match &s.account {
        Some(account) => format!("{account}/{}", s.user),
        None => s.user.clone(),
    };
    for s in statuses {
        let verdict = serde_json::to_value(s.verdict).expect("verdicts serialize");
        let verdict = verdict.as_str().unwrap_or_default().to_string();
        if s.keys.is_empty() {
            t.add_row(vec![
                user(s),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                verdict.clone(),
            ]);
        }
        for (i, k) in s.keys.iter().enumerate() {
            let used = k
                .last_used
                .as_ref()
                .map(|u| format!("{} {} {}", u.date, u.service, u.region))
                .unwrap_or_else(|| "never".into());
            t.add_row(vec![
                if i == 0 { user(s) } else { String::new() },
                k.id.clone(),
                k.role.to_string(),
                k.status.to_string(),
                format!("{}d", k.age_days),
                used,
                if k.held_by.is_empty() {
                    "-".into()
                } else {
                    k.held_by.join(", ")
                },
                if i == 0 {
                    verdict.clone()
                } else {
                    String::new()
                },
            ]);
        }
    }
    writeln!(out, "{t}")?;
    for s in statuses {
        writeln!(out, "{}: policy {}", user(s), s.policy)?;
    }
    for s in statuses {
        for reason in &s.reasons {
            writeln!(out, "{}: {reason}", user(s))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_a_given_width_and_keep_rows_whole_without_one() {
        let long = "file:secrets/psk-active-then-inactive.json, outfile:keys.json";
        let row = vec![
            "psk-active-then-inactive",
            "AKIARZPUZDIKEXXUF56I",
            "AKIARZPUZDIKHML76YDI",
            long,
            "rotated",
        ];
        let mut t = table(&["USER", "OLD CURRENT", "OLD LAST", "STORES", "OUTCOME"]);
        t.add_row(row.clone());
        // Not a terminal (as under cargo test): one line per row, whatever its length.
        let text = t.to_string();
        assert_eq!(text.lines().count(), 2, "{text}");
        // A terminal 100 columns wide: every line fits, the stores wrap, ids stay whole.
        t.set_width(100);
        let text = t.to_string();
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        assert!(text.lines().count() > 2, "{text}");
        for whole in [
            "AKIARZPUZDIKEXXUF56I",
            "AKIARZPUZDIKHML76YDI",
            "psk-active-then-inactive",
        ] {
            assert!(text.contains(whole), "{whole} is cut: {text}");
        }
    }
}
