//! `credrot generate`: gather the new service's values from flags, else from prompts on a
//! terminal, else defaults; append it to services.toml; print the Terraform.

use crate::cli::GenerateArgs;
use crate::config::DurationSetting;
use crate::error::Error;
use crate::generate::{
    add_service, check_bucket, check_name, default_location, terraform_snippet, NewService,
    StoreKind,
};
use dialoguer::theme::SimpleTheme;
use dialoguer::{Input, Select};
use std::io::IsTerminal;
use std::path::Path;

/// Asks for values: on a terminal by prompting, otherwise only from flags and defaults.
struct Asker {
    interactive: bool,
}

impl Asker {
    /// `given`, else a prompt (with `default`), else `default`; `check` validates either.
    fn text(
        &self,
        prompt: &str,
        flag: &str,
        given: Option<String>,
        default: Option<String>,
        check: fn(&str) -> Result<(), String>,
    ) -> Result<String, Error> {
        if let Some(value) = given {
            check(&value).map_err(|e| Error::Usage(format!("{flag}: {e}")))?;
            return Ok(value);
        }
        if !self.interactive {
            return default.ok_or_else(|| {
                Error::Usage(format!("{flag} is required when credrot generate cannot prompt (no terminal, or --no-input)"))
            });
        }
        let mut input = Input::<String>::with_theme(&SimpleTheme).with_prompt(prompt);
        if let Some(d) = default {
            input = input.default(d);
        }
        input
            .validate_with(|v: &String| check(v))
            .interact_text()
            .map_err(|e| Error::Usage(format!("prompt failed: {e}")))
    }

    fn store(&self, given: Option<StoreKind>) -> Result<StoreKind, Error> {
        const KINDS: [(StoreKind, &str); 4] = [
            (StoreKind::File, "file"),
            (StoreKind::OnePassword, "1password"),
            (StoreKind::SecretsManager, "secrets-manager"),
            (StoreKind::Ssm, "ssm"),
        ];
        match given {
            Some(kind) => Ok(kind),
            None if !self.interactive => Ok(StoreKind::File),
            None => Select::with_theme(&SimpleTheme)
                .with_prompt("Store for the key")
                .items(KINDS.map(|(_, label)| label))
                .default(0)
                .interact()
                .map(|i| KINDS[i].0)
                .map_err(|e| Error::Usage(format!("prompt failed: {e}"))),
        }
    }
}

fn anything(_: &str) -> Result<(), String> {
    Ok(())
}

fn duration(text: &str) -> Result<(), String> {
    DurationSetting::parse(text).map(|_| ())
}

fn user_name(text: &str) -> Result<(), String> {
    if crate::config::is_valid_iam_user_name(text) {
        Ok(())
    } else {
        Err(format!(
            "'{text}' is not a valid IAM user name: 1-64 letters, digits or + = , . @ _ -"
        ))
    }
}

/// Run `generate` against the configuration file at `path`.
pub fn run(path: &Path, args: &GenerateArgs) -> Result<(), Error> {
    let ask = Asker {
        interactive: !args.no_input
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal(),
    };
    let name = ask.text(
        "Service name",
        "--name",
        args.name.clone(),
        None,
        check_name,
    )?;
    let iam_user = ask.text(
        "IAM user",
        "--iam-user",
        args.iam_user.clone(),
        Some(format!("{name}-backup")),
        user_name,
    )?;
    let bucket = ask.text(
        "S3 bucket",
        "--bucket",
        args.bucket.clone(),
        None,
        check_bucket,
    )?;
    let description = ask.text(
        "Description",
        "--description",
        args.description.clone(),
        Some(format!("AWS IAM credentials for {name} S3 backups.")),
        anything,
    )?;
    let max_age = ask.text(
        "Maximum key age",
        "--max-age",
        args.max_age.clone(),
        Some("30d".into()),
        duration,
    )?;
    let store = ask.store(args.store)?;
    let location_flags = [
        (StoreKind::File, "--file", args.file.is_some()),
        (StoreKind::OnePassword, "--vault", args.vault.is_some()),
        (
            StoreKind::SecretsManager,
            "--secret-name",
            args.secret_name.is_some(),
        ),
        (StoreKind::Ssm, "--prefix", args.prefix.is_some()),
    ];
    if let Some((_, flag, _)) = location_flags
        .iter()
        .find(|(kind, _, given)| *given && *kind != store)
    {
        return Err(Error::Usage(format!(
            "{flag} does not apply to the chosen store; pass the --store it belongs to, or leave it out"
        )));
    }
    let (flag, given) = match store {
        StoreKind::File => ("--file", args.file.clone()),
        StoreKind::OnePassword => ("--vault", args.vault.clone()),
        StoreKind::SecretsManager => ("--secret-name", args.secret_name.clone()),
        StoreKind::Ssm => ("--prefix", args.prefix.clone()),
    };
    let location = ask.text(
        "Store location",
        flag,
        given,
        Some(default_location(store, &name)),
        anything,
    )?;
    let service = NewService {
        tags: args
            .tags
            .clone()
            .unwrap_or_else(|| vec!["aws".into(), name.clone(), "s3".into(), "backup".into()]),
        name,
        iam_user,
        description,
        bucket,
        max_age,
        store,
        location,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::Usage(format!("cannot read {}: {e}", path.display()))),
    };
    let text = add_service(&existing, path, &service).map_err(|e| Error::Usage(e.to_string()))?;
    if args.dry_run {
        eprintln!(
            "--dry-run: {} is unchanged; the service would be:\n{}",
            path.display(),
            &text[existing.len()..]
        );
    } else {
        write_keeping_mode(path, text.as_bytes())?;
        eprintln!(
            "added service '{}' to {}; check it with 'credrot show {}', then apply the Terraform below",
            service.name,
            path.display(),
            service.name
        );
    }
    print!("{}", terraform_snippet(&service));
    Ok(())
}

/// Replace `path` atomically, keeping its permissions (services.toml holds no secret).
fn write_keeping_mode(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    crate::fsutil::write_private_atomic(path, bytes)?;
    let mode = mode.unwrap_or_else(|| std::os::unix::fs::PermissionsExt::from_mode(0o644));
    std::fs::set_permissions(path, mode)?;
    Ok(())
}
