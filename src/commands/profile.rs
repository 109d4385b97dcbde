//! `credrot profile list|show|env|encrypt|decrypt|import-iam-sorry`.

use crate::cli::{GlobalArgs, OutputFormat, ProfileCommand, SshKeyArgs};
use crate::credentials_file::CredentialsFile;
use crate::error::Error;
use crate::output;
use crate::profile::{self, cipher::ValueKind, Change, LazyKey, ProfileError};
use secrecy::ExposeSecret;
use std::io::{IsTerminal, Write};

/// Run one `profile` subcommand.
pub(super) fn run(global: &GlobalArgs, action: &ProfileCommand) -> Result<(), Error> {
    let file = CredentialsFile::locate().map_err(ProfileError::from)?;
    let mut out = std::io::stdout().lock();
    match action {
        ProfileCommand::List => list(&file, global.output, &mut out),
        ProfileCommand::Show {
            profile,
            reveal,
            stored: true,
            ..
        } => {
            debug_assert!(!reveal, "clap refuses --reveal with --stored");
            show_stored(&file, profile, global.output, &mut out)
        }
        ProfileCommand::Show {
            profile,
            reveal,
            stored: false,
            ssh,
        } => show(&file, profile, *reveal, ssh, global.output, &mut out),
        ProfileCommand::Env {
            profile,
            force_tty,
            ssh,
        } => {
            if !force_tty && std::io::stdout().is_terminal() {
                return Err(Error::Usage(format!(
                    "refusing to print the secret of profile [{profile}] to a terminal: run `eval \"$(credrot profile env {profile})\"`, or add --force-tty to see it on screen"
                )));
            }
            let credentials = profile::load(&file, profile)?.decrypt(&mut keys(ssh))?;
            out.write_all(profile::env_lines(&credentials).as_bytes())?;
            out.flush()?;
            Ok(())
        }
        ProfileCommand::Encrypt { profile, ssh } => {
            let mut keys = keys(ssh);
            let change = profile::encrypt(&file, profile, &mut keys)?;
            report(&mut out, change, &file, profile, "encrypted", &keys)?;
            if change == Change::Done {
                writeln!(
                    out,
                    "AWS tools cannot read encrypted values themselves; give them the key through ~/.aws/config:\n\n[profile {profile}-credrot]\ncredential_process = credrot credential-process --profile {profile}{}\n",
                    // Absolute: the AWS tools run the command from any directory.
                    ssh.ssh_key
                        .as_ref()
                        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                        .map(|p| format!(" --ssh-key {}", p.display()))
                        .unwrap_or_default()
                )?;
            }
            Ok(())
        }
        ProfileCommand::Decrypt { profile, ssh } => {
            let mut keys = keys(ssh);
            let change = profile::decrypt(&file, profile, &mut keys)?;
            report(&mut out, change, &file, profile, "decrypted", &keys)
        }
        ProfileCommand::ImportIamSorry { profile, ssh } => {
            let mut keys = keys(ssh);
            let change = profile::import_iam_sorry(&file, profile, &mut keys)?;
            report(
                &mut out,
                change,
                &file,
                profile,
                "re-encrypted with credrot's scheme",
                &keys,
            )
        }
    }
}

fn keys(ssh: &SshKeyArgs) -> LazyKey {
    LazyKey::new(ssh.ssh_key.as_deref())
}

fn report(
    out: &mut dyn Write,
    change: Change,
    file: &CredentialsFile,
    profile: &str,
    done: &str,
    keys: &LazyKey,
) -> Result<(), Error> {
    match change {
        Change::Done => writeln!(
            out,
            "profile [{profile}] in {} {done}{}",
            file.path().display(),
            keys.fingerprint()
                .map(|f| format!(" (SSH key {f})"))
                .unwrap_or_default()
        )?,
        Change::Unchanged => writeln!(
            out,
            "profile [{profile}] in {} is {done} already; nothing changed",
            file.path().display()
        )?,
    }
    Ok(())
}

fn list(file: &CredentialsFile, format: OutputFormat, out: &mut dyn Write) -> Result<(), Error> {
    let profiles = profile::list(file)?;
    if format == OutputFormat::Json {
        output::write_json(out, &profiles)?;
        return Ok(());
    }
    let mut table = output::table(&["PROFILE", "STORED", "ACCESS KEY ID", "TEMPORARY"]);
    for p in &profiles {
        table.add_row(vec![
            p.name.clone(),
            p.state.to_string(),
            p.access_key_id.clone().unwrap_or_else(|| "-".into()),
            if p.temporary { "yes" } else { "no" }.to_string(),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

fn show(
    file: &CredentialsFile,
    name: &str,
    reveal: bool,
    ssh: &SshKeyArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let stored = profile::load(file, name)?;
    let credentials = stored.decrypt(&mut keys(ssh))?;
    let state = state_of(&stored);
    let secret = reveal.then(|| credentials.key.expose().to_string());
    if format == OutputFormat::Json {
        output::write_json(
            out,
            &serde_json::json!({
                "profile": name,
                "file": file.path(),
                "stored": state,
                "aws_access_key_id": credentials.key.id,
                "aws_secret_access_key": secret,
                "aws_session_token": reveal.then(|| credentials.session_token.as_ref().map(|t| t.expose_secret().to_string())).flatten(),
                "temporary": credentials.session_token.is_some(),
            }),
        )?;
        return Ok(());
    }
    writeln!(out, "profile:                {name}")?;
    writeln!(out, "file:                   {}", file.path().display())?;
    writeln!(out, "stored:                 {state}")?;
    writeln!(out, "aws_access_key_id:      {}", credentials.key.id)?;
    writeln!(
        out,
        "aws_secret_access_key:  {}",
        secret.unwrap_or_else(|| "(hidden; --reveal prints it)".into())
    )?;
    if let Some(token) = &credentials.session_token {
        writeln!(
            out,
            "aws_session_token:      {}",
            if reveal {
                token.expose_secret()
            } else {
                "(hidden; --reveal prints it)"
            }
        )?;
    }
    Ok(())
}

/// What `show --stored` prints for a secret stored in plain text.
const PLAIN_SECRET: &str =
    "(plain text, not shown: --reveal prints it, `credrot profile encrypt` encrypts it)";

/// `show --stored`: the values as the file holds them; nothing is decrypted.
fn show_stored(
    file: &CredentialsFile,
    name: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let stored = profile::load(file, name)?;
    // A plain-text secret's stored form is the secret itself: --stored shows what is
    // encrypted, and only --reveal prints a secret.
    let fields: Vec<(&str, &str)> = profile::CREDENTIAL_FIELDS
        .iter()
        .filter_map(|field| stored.raw(field).map(|value| (*field, value)))
        .map(|(field, value)| {
            let secret = field != profile::ACCESS_KEY_ID;
            if secret && profile::cipher::kind(value) == ValueKind::Plain {
                (field, PLAIN_SECRET)
            } else {
                (field, value)
            }
        })
        .collect();
    if format == OutputFormat::Json {
        let mut document = serde_json::Map::new();
        document.insert("profile".into(), name.into());
        document.insert("file".into(), file.path().display().to_string().into());
        document.insert("stored".into(), state_of(&stored).into());
        for (field, value) in &fields {
            document.insert((*field).into(), (*value).into());
        }
        output::write_json(out, &serde_json::Value::Object(document))?;
        return Ok(());
    }
    // The file's own form, so it reads like the section in ~/.aws/credentials.
    writeln!(out, "[{name}]")?;
    for (field, value) in fields {
        writeln!(out, "{field} = {value}")?;
    }
    Ok(())
}

fn state_of(stored: &profile::StoredProfile) -> &'static str {
    match stored.kind() {
        ValueKind::Plain => "plain",
        ValueKind::Credrot => "encrypted",
        ValueKind::Foreign => "foreign",
    }
}
