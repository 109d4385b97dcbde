//! The command line: clap definitions only. Parsing ends in [`Cli`]; everything after it is
//! library code in `commands`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  credrot list                                   services in ./services.toml
  credrot show postgresql                        one service's configuration
  credrot update postgresql --dry-run            what a rotation would do
  credrot update postgresql                      rotate and hand the key to its stores
  credrot rotate --path PSKServiceAccounts -o keys.json
                                                 rotate every user under /PSKServiceAccounts/
  credrot audit verify                           check the [audit] log's hash chain

Exit codes: 0 success, 1 a rotation, store or audit step failed (or audit verify found a\nbroken chain), 2 usage or configuration error.";

/// Rotate AWS IAM access keys with the CURRENT/LAST two-key pattern and hand the new keys
/// to the secret stores services read them from.
#[derive(Debug, Parser)]
#[command(name = "credrot", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Options that apply to every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Service configuration [default: ./services.toml]
    #[arg(long, global = true, env = "CREDROT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS profile from the shared config files (else AWS_PROFILE, else default)
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region (else [defaults] region in services.toml, else the AWS_* settings)
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint (an emulator, a VPC endpoint)
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Format of the data written to stdout
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// More detail on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr, no progress bar
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Format of the data on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document for machines.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the configured services: name, IAM user, stores, max age
    List,
    /// Show one service's configuration (never a secret)
    Show {
        /// The service name, as in services.toml
        service: String,
    },
    /// Rotate one service's IAM user and write the new key to its stores
    Update {
        /// The service name, as in services.toml
        service: String,
        /// How the rotation runs and where the keys go.
        #[command(flatten)]
        rotation: RotationArgs,
    },
    /// Rotate every IAM user whose IAM path is PATH
    Rotate {
        /// IAM path: `PSKServiceAccounts` and `/PSKServiceAccounts/` both work
        #[arg(long, value_name = "PATH")]
        path: String,
        /// How many users are rotated at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// How the rotation runs and where the keys go.
        #[command(flatten)]
        rotation: RotationArgs,
    },
    /// Work with the audit log
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        action: AuditCommand,
    },
}

/// `credrot audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first edited or missing line
    Verify {
        /// The audit log [default: [audit] path in services.toml]
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
    },
}

/// Options of `update` and `rotate`.
#[derive(Debug, Args)]
pub struct RotationArgs {
    /// Print the plan per user and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Rotate even users whose CURRENT key is younger than rotate_after
    #[arg(long)]
    pub force: bool,
    /// Do not take the per-user lock (only when no other credrot run can touch these users)
    #[arg(long)]
    pub no_lock: bool,
    /// How long a user's lock lasts if this run dies holding it
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Also write the new keys to FILE as {"user": {"AccessKeyId", "SecretAccessKey"}} (mode 0600)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub outfile: Option<PathBuf>,
    /// Print the new keys as JSON on stdout (the summary then goes to stderr)
    #[arg(long)]
    pub print_secrets: bool,
    /// How long to retry STS while IAM propagates a new key
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub verify_timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
