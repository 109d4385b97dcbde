//! One small module per subcommand: glue between the parsed command line and the library.

mod audit;
mod break_glass;
mod context;
mod credential_process;
mod exec;
mod generate;
mod man;
mod profile;
mod rotate;
mod rotate_profile;
mod session;
mod source;
mod status;

pub(crate) use context::runtime;

use crate::cli::{AuditCommand, Cli, Command, GlobalArgs};
use crate::config::Config;
use crate::error::Error;
use crate::output;
use std::path::{Path, PathBuf};

const DEFAULT_CONFIG: &str = "services.toml";

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<(), Error> {
    let global = &cli.global;
    match &cli.command {
        Command::List => {
            let config = load_config(global, true)?;
            output::write_services(&mut std::io::stdout().lock(), &config, global.output)?;
            Ok(())
        }
        Command::Show { service } => {
            let config = load_config(global, true)?;
            output::write_service(
                &mut std::io::stdout().lock(),
                config.service(service)?,
                global.output,
            )?;
            Ok(())
        }
        Command::Update {
            service,
            terraform_bin,
            terraform_apply,
            rotation,
        } => {
            let config = load_config(global, true)?;
            let terraform = rotate::TerraformArgs {
                bin: terraform_bin.as_deref(),
                apply: *terraform_apply,
            };
            rotate::update(&config, service, terraform, global, rotation)
        }
        Command::Status {
            services,
            path,
            fail_on,
            unused_after,
            alert,
            concurrency,
            accounts,
        } => {
            let config = load_config(global, path.is_none())?;
            status::run(
                &config,
                global,
                &status::StatusRequest {
                    services,
                    path: path.as_deref(),
                    fail_on: *fail_on,
                    alert: *alert,
                    options: crate::status::StatusOptions {
                        unused_after: *unused_after,
                    },
                    concurrency: usize::from(*concurrency),
                    accounts,
                },
            )
        }
        Command::Generate(args) => {
            let path = global
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            generate::run(&path, args)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                *shell,
                &mut command,
                "credrot",
                &mut std::io::stdout().lock(),
            );
            Ok(())
        }
        Command::Man { dir } => man::run(dir),
        Command::Rotate {
            path,
            concurrency,
            rotation,
        } => {
            let config = load_config(global, false)?;
            rotate::rotate_path(&config, path, usize::from(*concurrency), global, rotation)
        }
        Command::Session {
            session: args,
            format,
            write_profile,
        } => session::run(global, args, *format, write_profile.as_deref()),
        Command::Exec {
            session: args,
            command,
        } => exec::run(global, args, command),
        Command::Profile { action } => profile::run(global, action),
        Command::CredentialProcess { ssh } => credential_process::run(global, ssh),
        Command::RotateProfile {
            profile,
            verify_timeout,
            ssh,
        } => rotate_profile::run(global, profile, *verify_timeout, ssh),
        Command::BreakGlass { action } => {
            let config = load_config(global, true)?;
            break_glass::run(&config, global, action)
        }
        Command::Lambda => crate::lambda::run(global),
        Command::Audit {
            action: AuditCommand::Verify { path },
        } => audit::verify(global, path.as_deref(), || load_config(global, true)),
    }
}

/// Load the configuration. A `rotate --path` run may go without one when the user named
/// none and ./services.toml does not exist (keys then go to -o / --print-secrets only).
fn load_config(global: &GlobalArgs, required: bool) -> Result<Config, Error> {
    let path: PathBuf = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if !required && global.config.is_none() && !Path::new(&path).exists() {
        return Ok(Config::empty(&path));
    }
    Ok(Config::load(&path)?)
}
