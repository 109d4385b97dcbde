//! Checks of single values: names, templates and store settings, each reported at the
//! place it was written. Nothing here talks to AWS.

use super::error::Problem;
use super::raw::RawAudit;
use super::store::StoreConfig;
use super::{AuditConfig, CloudWatchTarget};
use std::path::Path;
use toml::Spanned;

/// Turn `PSKServiceAccounts`, `/PSKServiceAccounts` or `/PSKServiceAccounts/` into the IAM
/// form `/PSKServiceAccounts/`.
pub fn normalize_iam_path(path: &str) -> String {
    let inner = path.trim().trim_matches('/');
    if inner.is_empty() {
        "/".to_string()
    } else {
        format!("/{inner}/")
    }
}

/// Whether `name` is a valid IAM user name (1-64 of `A-Za-z0-9+=,.@_-`).
pub fn is_valid_iam_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Whether `path` (normalized) is a valid IAM path: at most 512 printable ASCII characters,
/// no spaces.
pub fn is_valid_iam_path(path: &str) -> bool {
    path.len() <= 512 && path.chars().all(|c| ('!'..='~').contains(&c))
}

/// `path` in IAM form, or what is wrong with it (for `--path` and `[paths.NAME]`).
pub fn parse_iam_path(path: &str) -> Result<String, String> {
    let normalized = normalize_iam_path(path);
    if is_valid_iam_path(&normalized) {
        Ok(normalized)
    } else {
        Err(format!(
            "'{path}' is not a valid IAM path: use at most 512 printable ASCII characters without spaces, e.g. PSKServiceAccounts"
        ))
    }
}

/// What service names may be: they are substituted into file paths, item titles and
/// parameter names, and typed on command lines.
pub const SERVICE_NAME_RULE: &str =
    "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit";

/// Whether `name` can name a service: `{service}` can then never leave a directory
/// (`..`, `/`), start an option (`-`) or break a line or a shell command.
pub fn is_valid_service_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// One part of a store template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece<'a> {
    /// Text kept as written.
    Text(&'a str),
    /// `{name}`, replaced when the store is opened.
    Placeholder(&'a str),
}

/// Split `template` into text and placeholders; a `{` without its `}`, a `}` without its
/// `{`, or a `{` inside a placeholder is an error.
pub(super) fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        if rest[at..].starts_with('}') {
            return Err(format!("'{template}' has a '}}' without an opening '{{'"));
        }
        if at > 0 {
            found.push(Piece::Text(&rest[..at]));
        }
        let after = &rest[at + 1..];
        let close = after
            .find(['{', '}'])
            .filter(|&i| after[i..].starts_with('}'))
            .ok_or_else(|| format!("'{template}' has a '{{' without a closing '}}'"))?;
        found.push(Piece::Placeholder(&after[..close]));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        found.push(Piece::Text(rest));
    }
    Ok(found)
}

/// `template` with each placeholder replaced by `value(name)` (left as written when it
/// has none); `template` was checked by [`pieces`].
pub(super) fn expand(template: &str, value: &dyn Fn(&str) -> Option<String>) -> String {
    pieces(template)
        .unwrap_or_default()
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.to_string(),
            Piece::Placeholder(name) => value(name).unwrap_or_else(|| format!("{{{name}}}")),
        })
        .collect()
}

/// `template` without its placeholders (already checked to be well formed).
fn literal_part(template: &str) -> String {
    expand(template, &|_| Some(String::new()))
}

/// Check the templates of `store`: well formed, only `allowed` placeholders, and `{user}`
/// in each when `needs_user` (path stores: without it every user would overwrite the same
/// entry). An explicit 1Password title is no exception; the default title names the user.
pub(super) fn check_templates(
    store: &StoreConfig,
    offset: usize,
    allowed: &[&str],
    needs_user: bool,
) -> Result<(), Problem> {
    let allowed_list = allowed
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (field, template) in store.templates() {
        if template.trim().is_empty() {
            return Err(Problem::new(
                offset,
                format!("{} store has an empty {field}", store.kind()),
                format!("set {field} to where the key should go"),
            ));
        }
        let found: Vec<&str> = pieces(template)
            .map_err(|msg| {
                Problem::new(
                    offset,
                    format!("{field} {msg}"),
                    format!("braces only mark placeholders: write {allowed_list}"),
                )
            })?
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Placeholder(name) => Some(name),
                Piece::Text(_) => None,
            })
            .collect();
        if let Some(bad) = found.iter().find(|p| !allowed.contains(p)) {
            return Err(Problem::new(
                offset,
                format!("unknown placeholder {{{bad}}} in {field} '{template}'"),
                format!("placeholders allowed here: {allowed_list}"),
            ));
        }
        if needs_user && !found.contains(&"user") {
            return Err(Problem::new(
                offset,
                format!("{field} '{template}' of a path store has no {{user}}; every user would overwrite the same entry"),
                format!("put {{user}} in the {field}, e.g. \"secrets/{{user}}.json\""),
            ));
        }
    }
    Ok(())
}

/// A file path template whose placeholder would expand to `.` or `..` (an IAM user may be
/// called `..`) leaves the directory it was written for; `expanded` is `template` expanded.
pub(super) fn check_path_stays(
    template: &str,
    expanded: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    for part in template.split('/') {
        if part.contains('{') && matches!(expanded(part).as_str(), "." | "..") {
            return Err(format!(
                "path '{template}' expands to '{}', which leaves its directory",
                expanded(template)
            ));
        }
    }
    Ok(())
}

/// The names AWS would refuse, caught here so a bad name is a configuration error (exit 2)
/// and not a failed rotation.
pub(super) fn check_store_names(store: &StoreConfig) -> Result<(), (String, String)> {
    match store {
        StoreConfig::Ssm(c) => {
            let prefix = &c.prefix;
            let literal = literal_part(prefix);
            if !prefix.starts_with('/') || prefix.ends_with('/') {
                return Err((
                    format!("ssm prefix '{prefix}' must start with '/' and not end with one"),
                    "write it like \"/home-ops/postgresql-backup\"; credrot adds /access_key_id and /secret_access_key".to_string(),
                ));
            }
            if let Some(bad) = literal
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
            {
                return Err((
                    format!(
                        "ssm prefix '{prefix}' contains '{bad}', which SSM parameter names cannot"
                    ),
                    "use letters, digits and _ . - /".to_string(),
                ));
            }
            let lower = prefix.to_ascii_lowercase();
            if lower.starts_with("/aws") || lower.starts_with("/ssm") {
                return Err((
                    format!("ssm prefix '{prefix}' starts with a name AWS reserves"),
                    "SSM refuses parameter names that begin with aws or ssm; choose another prefix"
                        .to_string(),
                ));
            }
        }
        StoreConfig::SecretsManager(c) => {
            if let Some(bad) = literal_part(&c.name)
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
            {
                return Err((
                    format!(
                        "secrets-manager name '{}' contains '{bad}', which secret names cannot",
                        c.name
                    ),
                    "use letters, digits and / _ + = . @ -".to_string(),
                ));
            }
        }
        StoreConfig::OnePassword(c) if c.vault.trim().is_empty() => {
            return Err((
                "1password store has an empty vault".to_string(),
                "set vault to the vault's name, or leave it out for \"Automation\"".to_string(),
            ));
        }
        StoreConfig::Kubernetes(c) => c.check(&literal_part(&c.name))?,
        StoreConfig::Vault(c) => c.check()?,
        StoreConfig::OnePassword(_) | StoreConfig::File(_) => {}
        StoreConfig::Github(c) => check_github(c)?,
        StoreConfig::GcpSecretManager(c) => check_gcp(c)?,
        StoreConfig::AzureKeyVault(c) => check_azure(c)?,
    }
    Ok(())
}

type NameProblem = (String, String);

fn problem(message: String, hint: &str) -> NameProblem {
    (message, hint.to_string())
}

/// GitHub's rule for secret and variable names: letters, digits and `_`, not starting with
/// a digit or `GITHUB_`. `{user}` may expand to more; the store refuses that at run time.
pub fn github_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Some(format!("contains '{bad}'"));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Some("starts with a digit".to_string());
    }
    if name.to_ascii_uppercase().starts_with("GITHUB_") {
        return Some("starts with GITHUB_, which GitHub reserves".to_string());
    }
    None
}

fn check_github(c: &super::GithubConfig) -> Result<(), NameProblem> {
    const SCOPE: &str = "set repository = \"OWNER/REPO\" (add environment = \"NAME\" for an environment's secrets), or org = \"NAME\"";
    match (&c.repository, &c.org) {
        (Some(_), Some(_)) => {
            return Err(problem(
                "github store sets both repository and org".into(),
                SCOPE,
            ))
        }
        (None, None) => {
            return Err(problem(
                "github store names neither a repository nor an org".into(),
                SCOPE,
            ))
        }
        _ => {}
    }
    if let Some(repo) = &c.repository {
        let parts: Vec<&str> = repo.split('/').collect();
        let ok = parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !ok {
            return Err(problem(
                format!("github repository '{repo}' is not OWNER/REPO"),
                "write it like \"home-ops/infra\"",
            ));
        }
    }
    if c.org.is_some() && c.environment.is_some() {
        return Err(problem(
            "github store sets environment with org; environments belong to a repository".into(),
            SCOPE,
        ));
    }
    if let Some(env) = &c.environment {
        if env.trim().is_empty() || env.len() > 255 {
            return Err(problem(
                format!("github environment '{env}' is empty or longer than 255 characters"),
                "name the environment as its settings page does",
            ));
        }
    }
    if c.org.is_none() && (c.visibility.is_some() || c.selected_repository_ids.is_some()) {
        return Err(problem(
            "github visibility and selected_repository_ids are for org secrets".into(),
            "remove them, or use org = \"NAME\"",
        ));
    }
    let selected = c.visibility == Some(super::GithubVisibility::Selected);
    match (&c.selected_repository_ids, selected) {
        (None, true) => {
            return Err(problem(
                "github visibility = \"selected\" needs selected_repository_ids".into(),
                "list the repositories' numeric ids, e.g. selected_repository_ids = [1296269]",
            ))
        }
        (Some(_), false) => {
            return Err(problem(
                "github selected_repository_ids is set but visibility is not \"selected\"".into(),
                "set visibility = \"selected\" or remove selected_repository_ids",
            ))
        }
        _ => {}
    }
    for (field, name) in [
        ("access_key_id_secret", &c.access_key_id_secret),
        ("secret_access_key_secret", &c.secret_access_key_secret),
        ("key_id_variable", &c.key_id_variable),
    ] {
        if let Some(what) = github_name_problem(&literal_part(name)) {
            return Err(problem(
                format!("github {field} '{name}' {what}"),
                "GitHub names take letters, digits and _, and may not start with a digit or GITHUB_",
            ));
        }
    }
    let names = [
        c.access_key_id_secret.to_ascii_uppercase(),
        c.secret_access_key_secret.to_ascii_uppercase(),
    ];
    if names[0] == names[1] {
        return Err(problem(
            "github access_key_id_secret and secret_access_key_secret are the same secret".into(),
            "give them different names (GitHub names ignore case)",
        ));
    }
    if let Some(token_env) = &c.token_env {
        if token_env.is_empty() || token_env.contains('=') {
            return Err(problem(
                format!("github token_env '{token_env}' is not an environment variable name"),
                "name the variable holding the token, e.g. token_env = \"GH_ROTATION_TOKEN\"",
            ));
        }
    }
    crate::store::check_base_url(&c.api_url).map_err(|m| {
        problem(
            format!("github api_url: {m}"),
            "e.g. api_url = \"https://github.example.com/api/v3\"",
        )
    })
}

fn check_gcp(c: &super::GcpSecretManagerConfig) -> Result<(), NameProblem> {
    let project_ok = (1..=64).contains(&c.project.len())
        && c.project
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-.:".contains(ch));
    if !project_ok {
        return Err(problem(
            format!(
                "gcp-secret-manager project '{}' is not a project id",
                c.project
            ),
            "use the project id (lower-case letters, digits and dashes) or its number",
        ));
    }
    let literal = literal_part(&c.secret);
    if literal.len() > 255
        || literal
            .chars()
            .any(|ch| !(ch.is_ascii_alphanumeric() || "-_".contains(ch)))
    {
        return Err(problem(
            format!(
                "gcp-secret-manager secret '{}' may hold only letters, digits, - and _ (at most 255)",
                c.secret
            ),
            "e.g. secret = \"pg-backup-aws\"",
        ));
    }
    crate::store::check_base_url(&c.endpoint).map_err(|m| {
        problem(
            format!("gcp-secret-manager endpoint: {m}"),
            "leave it out for https://secretmanager.googleapis.com",
        )
    })
}

fn check_azure(c: &super::AzureKeyVaultConfig) -> Result<(), NameProblem> {
    let literal = literal_part(&c.name);
    if literal.len() > 127
        || literal
            .chars()
            .any(|ch| !(ch.is_ascii_alphanumeric() || ch == '-'))
    {
        return Err(problem(
            format!(
                "azure-key-vault name '{}' may hold only letters, digits and - (at most 127)",
                c.name
            ),
            "Key Vault secret names allow nothing else, e.g. name = \"pg-backup-aws\"",
        ));
    }
    crate::store::check_base_url(&c.vault_url).map_err(|m| {
        problem(
            format!("azure-key-vault vault_url: {m}"),
            "e.g. vault_url = \"https://my-vault.vault.azure.net\"",
        )
    })
}

/// Validate `[audit]`: it must name a destination, and CloudWatch names must be valid.
pub(super) fn check_audit(raw: Spanned<RawAudit>, base_dir: &Path) -> Result<AuditConfig, Problem> {
    let section = raw.span().start;
    let raw = raw.into_inner();
    let path = match raw.path {
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(Problem::new(
                p.span().start,
                "[audit] path is empty".to_string(),
                "set path to the audit file, e.g. \"audit/credrot.log\"".to_string(),
            ))
        }
        Some(p) => Some(base_dir.join(p.into_inner())),
        None => None,
    };
    let group = raw
        .cloudwatch_log_group
        .map(|g| {
            let ok = (1..=512).contains(&g.get_ref().len())
                && g.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
            if ok {
                Ok(g.into_inner())
            } else {
                Err(Problem::new(
                    g.span().start,
                    format!(
                        "'{}' is not a valid CloudWatch Logs group name",
                        g.get_ref()
                    ),
                    "use 1 to 512 letters, digits or any of . _ - / #".to_string(),
                ))
            }
        })
        .transpose()?;
    let stream = raw
        .cloudwatch_log_stream
        .map(|s| {
            let ok = (1..=512).contains(&s.get_ref().len()) && !s.get_ref().contains([':', '*']);
            if group.is_none() {
                Err(Problem::new(
                    s.span().start,
                    "cloudwatch_log_stream is set without cloudwatch_log_group".to_string(),
                    "add cloudwatch_log_group = \"NAME\" or remove the stream".to_string(),
                ))
            } else if ok {
                Ok(s.into_inner())
            } else {
                Err(Problem::new(
                    s.span().start,
                    format!(
                        "'{}' is not a valid CloudWatch Logs stream name",
                        s.get_ref()
                    ),
                    "use 1 to 512 characters, without ':' or '*'".to_string(),
                ))
            }
        })
        .transpose()?;
    if path.is_none() && group.is_none() {
        return Err(Problem::new(
            section,
            "[audit] names no destination".to_string(),
            "set path = \"FILE\", cloudwatch_log_group = \"NAME\", or both".to_string(),
        ));
    }
    Ok(AuditConfig {
        path,
        cloudwatch: group.map(|group| CloudWatchTarget { group, stream }),
    })
}

/// Whether `address` is a Terraform address of one `aws_iam_access_key` resource (instance):
/// `module.NAME[INDEX].` parts, then `aws_iam_access_key.NAME[INDEX]`, where an index is a
/// number or a quoted string. It is passed to `terraform state rm` and `apply -target`, so
/// it must name that kind of resource and nothing else.
pub fn is_access_key_address(address: &str) -> bool {
    /// Split off `NAME` (a Terraform identifier) and an optional `[INDEX]`.
    fn step(rest: &str) -> Option<&str> {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let first = rest.chars().next()?;
        if name_len == 0 || !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let rest = &rest[name_len..];
        let Some(index) = rest.strip_prefix('[') else {
            return Some(rest);
        };
        let end = index.find(']')?;
        let inside = &index[..end];
        let number = !inside.is_empty() && inside.bytes().all(|b| b.is_ascii_digit());
        let quoted = inside.len() >= 2
            && inside.starts_with('"')
            && inside.ends_with('"')
            && inside[1..inside.len() - 1]
                .chars()
                .all(|c| !c.is_control() && c != '"' && c != '\\');
        (number || quoted).then(|| &index[end + 1..])
    }
    let mut rest = address;
    while let Some(module) = rest.strip_prefix("module.") {
        match step(module).and_then(|r| r.strip_prefix('.')) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.strip_prefix("aws_iam_access_key.")
        .and_then(step)
        .is_some_and(str::is_empty)
}
