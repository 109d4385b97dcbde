//! The command line: clap definitions only. Parsing ends in [`Cli`]; everything after it is
//! library code in `commands`.

use crate::duration;
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

  credrot status --fail-on overdue               exit 3 if any key is past max_age

Your own credentials (~/.aws/credentials):
  eval \"$(credrot session --profile work)\"       temporary credentials in this shell
  credrot exec --profile work -- terraform plan  run one command with temporary credentials
  credrot profile encrypt work                   encrypt a profile with your ED25519 SSH key
  credrot rotate-profile work                    rotate the profile's own access key

Exit codes: 0 success, 1 a rotation, store, AWS or audit step failed (or audit verify
found a broken chain), 2 usage or configuration error (nothing changed), 3 a status gate
(--fail-on) tripped.";

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

/// Options shared by every command (shown under their own heading).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Service configuration [default: ./services.toml]
    #[arg(long, global = true, env = "CREDROT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS profile from the shared config files; wins over AWS_ACCESS_KEY_ID in the
    /// environment (else AWS_PROFILE, else the default chain). Encrypted profiles are
    /// decrypted (CREDROT_SSH_KEY, ssh-agent or CREDROT_SSH_PASSPHRASE)
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region (else the service's region, else [defaults] region, else the AWS_* settings)
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
        /// terraform or tofu binary for services with source = "terraform" [default: terraform, else tofu, on PATH]
        #[arg(long, value_name = "PATH")]
        terraform_bin: Option<PathBuf>,
        /// For a service with source = "terraform" and terraform_resource: a full rotation.
        /// Hands Terraform's key on if the stores lack it; else retires the LAST key by the
        /// usual rules, runs terraform state rm and apply -target on terraform_resource (a
        /// new key; the old one stays as LAST) and hands the new key on. With --dry-run:
        /// terraform plan -target only
        #[arg(long)]
        terraform_apply: bool,
        /// How the rotation runs and where the keys go.
        #[command(flatten)]
        rotation: RotationArgs,
    },
    /// Rotate every IAM user whose IAM path is PATH
    Rotate {
        /// IAM path: `PSKServiceAccounts` and `/PSKServiceAccounts/` both work
        #[arg(long, value_name = "PATH", value_parser = crate::config::parse_iam_path)]
        path: String,
        /// How many users are rotated at once, 1 to 256 (AWS throttling slows requests down, it does not fail them)
        #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// How the rotation runs and where the keys go.
        #[command(flatten)]
        rotation: RotationArgs,
    },
    /// Report each user's keys: age, last use, which store holds which key, and a verdict
    /// (ok, unused, due, overdue, last-in-use, stuck, drift, broken, unexpected-use). Reads
    /// only; --alert also POSTs the findings to the [notify] webhook.
    Status {
        /// Services to report [default: every service, unless --path is given]
        services: Vec<String>,
        /// Report the IAM users whose path is PATH (with their [paths] stores); the
        /// services are then reported only when named too. No user there is exit 2
        #[arg(long, value_name = "PATH", value_parser = crate::config::parse_iam_path)]
        path: Option<String>,
        /// Exit 3 when any user is at or past this verdict (order: ok, unused, due, overdue, last-in-use, stuck, drift, broken, unexpected-use)
        #[arg(long, value_enum, value_name = "VERDICT")]
        fail_on: Option<crate::status::Verdict>,
        /// A key unused for this long is reported as unused (1m to 3650d) [default: the policy's unused_after, 45d]
        #[arg(long, value_name = "DURATION", value_parser = unused_after)]
        unused_after: Option<Duration>,
        /// POST the users with findings (at or past --fail-on, else any) to the [notify] webhook
        #[arg(long)]
        alert: bool,
        /// How many users are read at once, 1 to 256
        #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// Only this account of [accounts] (repeat for more) [default: every account it selects]
        #[arg(long = "account", value_name = "ID", value_parser = account_id)]
        accounts: Vec<String>,
    },
    /// Add a service to services.toml (keeping its comments) and print the Terraform for its
    /// IAM user and S3 policy (credrot makes the keys). Prompts on a terminal; flags script it.
    Generate(GenerateArgs),
    /// Print a shell completion script (e.g. credrot completions bash > /etc/bash_completion.d/credrot)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages, one per command (credrot.1, credrot-update.1, ...), into DIR
    /// (e.g. credrot man ~/.local/share/man/man1)
    Man {
        /// The directory (created if missing)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print temporary credentials from STS (GetSessionToken, or AssumeRole with --role-arn)
    Session {
        /// Which credentials.
        #[command(flatten)]
        session: SessionArgs,
        /// How to print them [default: env, or nothing with --write-profile]
        #[arg(long, value_enum)]
        format: Option<CredentialFormat>,
        /// Write them to this profile of the credentials file instead
        #[arg(long, value_name = "NAME")]
        write_profile: Option<String>,
    },
    /// Run COMMAND with temporary credentials in its environment; its exit code is credrot's
    Exec {
        /// Which credentials.
        #[command(flatten)]
        session: SessionArgs,
        /// The command and its arguments (after --)
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Encrypted profiles of the shared credentials file
    Profile {
        /// What to do.
        #[command(subcommand)]
        action: ProfileCommand,
    },
    /// Print a profile's key as credential_process JSON (decrypting it in memory); use as
    /// `credential_process = credrot credential-process --profile NAME` in ~/.aws/config.
    /// --profile is required
    #[command(override_usage = "credrot credential-process --profile NAME [--ssh-key PATH]")]
    CredentialProcess {
        /// The SSH key.
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
    /// Rotate the access key of a profile with itself: create, store, verify, delete the old
    RotateProfile {
        /// The profile, as in [NAME] of the credentials file
        #[arg(id = "profile_name", value_name = "PROFILE")]
        profile: String,
        /// How long to retry STS and IAM while IAM propagates the new key (1s to 1h)
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = verify_timeout)]
        verify_timeout: Duration,
        /// The SSH key, when the profile is encrypted.
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
    /// Emergency access to a privileged role, after approval by someone else (see docs/guide/break-glass.md)
    BreakGlass {
        /// What to do.
        #[command(subcommand)]
        action: crate::break_glass::cli::BreakGlassCommand,
    },
    /// Serve AWS Lambda events (custom runtime provided.al2023; a `bootstrap` started with no
    /// arguments under the Lambda runtime does this by itself): each event names a command,
    /// e.g. {"command": "rotate", "path": "P"}, and is answered with its JSON summary (see
    /// docs/guide/scheduling.md)
    Lambda,
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
    /// Check the hash chain: exit 0 when intact, 1 naming the first edited or missing line,
    /// 2 when there is no log to check (no such file, or no --path and no [audit] path)
    Verify {
        /// The audit log [default: [audit] path in services.toml]
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
    },
}

/// Which SSH key encrypts profiles.
#[derive(Debug, Args, Clone, Default)]
pub struct SshKeyArgs {
    /// Passphrase-protected ED25519 private key whose signature derives the profile key
    /// [default: ~/.ssh/id_ed25519]
    #[arg(long, value_name = "PATH", env = "CREDROT_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
}

/// Options of `session` and `exec`: which temporary credentials to get.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// How long the credentials last: 15m to 36h (with --role-arn up to 12h)
    /// [default: 12h, with --role-arn 1h, with --user 36h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Serial number or ARN of your MFA device
    #[arg(long, value_name = "ARN", requires = "token_code")]
    pub mfa_serial: Option<String>,
    /// The current 6-digit code of the MFA device
    #[arg(long, value_name = "CODE", requires = "mfa_serial")]
    pub token_code: Option<String>,
    /// Assume this role (STS AssumeRole) instead of GetSessionToken
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// A session of this other IAM user, made by the profile (a manager allowed to create and
    /// delete the user's access keys): a short-lived key for NAME signs GetSessionToken and
    /// is deleted again, always. Refused when NAME has two keys already (iam-sorry's
    /// `--profile MANAGER NAME`)
    #[arg(long, value_name = "NAME", conflicts_with = "role_arn")]
    pub user: Option<String>,
    /// With --user: how long to wait for IAM to accept the short-lived key (1s to 1h)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = verify_timeout, requires = "user")]
    pub verify_timeout: Duration,
    /// Session name for --role-arn, shown in CloudTrail
    #[arg(
        long,
        value_name = "NAME",
        requires = "role_arn",
        default_value = "credrot"
    )]
    pub role_session_name: String,
    /// Always ask STS: neither read nor write the session cache
    #[arg(long)]
    pub no_cache: bool,
    /// The SSH key, when the profile is encrypted.
    #[command(flatten)]
    pub ssh: SshKeyArgs,
}

/// How `credrot session` prints the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CredentialFormat {
    /// `export AWS_ACCESS_KEY_ID=...` lines, for `eval "$(credrot session)"`.
    Env,
    /// One JSON object.
    Json,
    /// The JSON of an AWS `credential_process` (Version 1, with Expiration).
    CredentialProcess,
}

/// `credrot profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List the profiles of the credentials file and whether each is encrypted
    List,
    /// Show one profile's key id (decrypting it if needed); the secret only with --reveal, the
    /// stored ciphertext with --stored
    ///
    /// --reveal is iam-sorry's --show-decrypted, --stored its --show-encrypted.
    Show {
        /// The profile, as in [NAME] of the credentials file
        #[arg(id = "profile_name", value_name = "PROFILE")]
        profile: String,
        /// Also print the secret access key (and session token), decrypted
        #[arg(long, conflicts_with = "stored")]
        reveal: bool,
        /// Print the values exactly as stored in the file (ciphertext when encrypted); decrypts
        /// nothing and needs no SSH key
        #[arg(long)]
        stored: bool,
        /// The SSH key.
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
    /// Print `export` lines of a profile's key for `eval "$(credrot profile env NAME)"`
    /// (iam-sorry's --eval)
    ///
    /// Prints `export AWS_ACCESS_KEY_ID=...` and `export AWS_SECRET_ACCESS_KEY=...` (and the
    /// session token, if the profile holds one; else `unset AWS_SESSION_TOKEN ...`), decrypted
    /// in memory if the profile is encrypted. Refused when stdout is a terminal, so the secret
    /// is not left on screen, unless --force-tty
    Env {
        /// The profile, as in [NAME] of the credentials file
        #[arg(id = "profile_name", value_name = "PROFILE")]
        profile: String,
        /// Print even when stdout is a terminal
        #[arg(long)]
        force_tty: bool,
        /// The SSH key.
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
    /// Encrypt the profile's access key id and secret in place
    Encrypt {
        /// The profile; `default` is refused
        #[arg(id = "profile_name", value_name = "PROFILE")]
        profile: String,
        /// The SSH key.
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
    /// Decrypt the profile back to plain text in place
    Decrypt {
        /// The profile
        #[arg(id = "profile_name", value_name = "PROFILE")]
        profile: String,
        /// The SSH key.
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
    /// Re-encrypt a profile that iam-sorry encrypted with credrot's scheme
    ImportIamSorry {
        /// The profile
        #[arg(id = "profile_name", value_name = "PROFILE")]
        profile: String,
        /// The SSH key iam-sorry used (its default is ~/.ssh/id_ed25519 too).
        #[command(flatten)]
        ssh: SshKeyArgs,
    },
}

/// Options of `generate`; any value not given is prompted for on a terminal.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Service name, e.g. redis (required)
    #[arg(long)]
    pub name: Option<String>,
    /// IAM user [default: NAME-backup]
    #[arg(long, value_name = "USER")]
    pub iam_user: Option<String>,
    /// The S3 bucket the user may read and write (required)
    #[arg(long)]
    pub bucket: Option<String>,
    /// One line on what the key is for [default: AWS IAM credentials for NAME S3 backups.]
    #[arg(long)]
    pub description: Option<String>,
    /// Tags, comma-separated [default: aws,NAME,s3,backup]
    #[arg(long, value_delimiter = ',')]
    pub tags: Option<Vec<String>>,
    /// Longest a key may live [default: 30d]
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
    /// Where the key goes [default: file]
    #[arg(long, value_enum)]
    pub store: Option<crate::generate::StoreKind>,
    /// 1password: the vault [default: Automation]
    #[arg(long)]
    pub vault: Option<String>,
    /// file: the path [default: secrets/{service}.json]
    #[arg(long, value_name = "PATH")]
    pub file: Option<String>,
    /// secrets-manager: the secret's name [default: credrot/NAME/aws]
    #[arg(long)]
    pub secret_name: Option<String>,
    /// ssm: the parameter prefix [default: /credrot/NAME]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Never prompt; missing required values are an error
    #[arg(long)]
    pub no_input: bool,
    /// Print the result but do not write services.toml
    #[arg(long)]
    pub dry_run: bool,
}

/// Shells `credrot completions` writes scripts for.
pub use clap_complete::Shell;

/// Options of `update` and `rotate`.
#[derive(Debug, Args)]
pub struct RotationArgs {
    /// Print the plan per user and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Rotate even users whose CURRENT key is younger than rotate_after
    #[arg(long)]
    pub force: bool,
    /// Do not take a young key that some store lacks for another run's work in progress, and clean it up at once (only when no other credrot run can touch these users)
    #[arg(long)]
    pub no_lock: bool,
    /// How long a new key that some store lacks counts as another run's work in progress (the user is busy); after that, as a dead run's, which this run finishes (0s to 7d)
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = lock_ttl, conflicts_with = "no_lock")]
    pub lock_ttl: Duration,
    /// Also write the new keys to FILE as {"user": {"AccessKeyId", "SecretAccessKey"}} (mode 0600)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub outfile: Option<PathBuf>,
    /// Print the new keys as JSON on stdout (the summary then goes to stderr)
    #[arg(long)]
    pub print_secrets: bool,
    /// How long to retry STS while IAM propagates a new key (1s to 1h)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = verify_timeout)]
    pub verify_timeout: Duration,
    /// Only this account of [accounts] (repeat for more) [default: every account it selects]
    #[arg(long = "account", value_name = "ID", value_parser = account_id)]
    pub accounts: Vec<String>,
    /// Start no user after this long (1s to 7d); users not started by then are reported failed, unchanged, for the next run. For schedulers that kill a job at a deadline [default: no limit]
    #[arg(long, value_name = "DURATION", value_parser = time_limit)]
    pub time_limit: Option<Duration>,
    /// Exit 3 when a user was left unconverged: busy (another run, or one that died on
    /// another host, holds it) [possible values: busy]
    #[arg(long, value_name = "OUTCOME", value_enum)]
    pub fail_on: Option<RunGate>,
}

/// What makes `update`/`rotate --fail-on` exit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunGate {
    /// Users reported `busy`: left to another run, so not converged by this one.
    Busy,
}

// Every duration flag is range-checked by clap, before any AWS call: a value too large to
// add to a clock must be a usage error (exit 2), not a panic after IAM was changed. (The
// session --duration is checked against STS's limits by `session`, also before any call.)

fn account_id(text: &str) -> Result<String, String> {
    if crate::config::is_account_id(text) {
        Ok(text.to_string())
    } else {
        Err("an AWS account id is 12 digits, e.g. 222222222222".to_string())
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 2m)"))
}

fn verify_timeout(text: &str) -> Result<Duration, String> {
    duration::flags::VERIFY_TIMEOUT.parse(text)
}

fn time_limit(text: &str) -> Result<Duration, String> {
    duration::flags::TIME_LIMIT.parse(text)
}

fn lock_ttl(text: &str) -> Result<Duration, String> {
    duration::flags::LOCK_TTL.parse(text)
}

fn unused_after(text: &str) -> Result<Duration, String> {
    duration::flags::UNUSED_AFTER.parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn usage_error(args: &[&str]) -> String {
        let err = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        err.to_string()
    }

    #[test]
    fn duration_flags_are_range_checked() {
        let err = usage_error(&[
            "credrot",
            "update",
            "a",
            "--verify-timeout",
            "500000000000y",
        ]);
        assert!(
            err.contains("--verify-timeout") && err.contains("1s to 1h"),
            "{err}"
        );
        let err = usage_error(&[
            "credrot",
            "rotate",
            "--path",
            "P",
            "--lock-ttl",
            "999999999d",
        ]);
        assert!(
            err.contains("--lock-ttl") && err.contains("0s to 7d"),
            "{err}"
        );
        let err = usage_error(&["credrot", "rotate-profile", "p", "--verify-timeout", "2h"]);
        assert!(err.contains("1s to 1h"), "{err}");
        let err = usage_error(&["credrot", "status", "--unused-after", "99999d"]);
        assert!(
            err.contains("--unused-after") && err.contains("3650d"),
            "{err}"
        );
        assert!(Cli::try_parse_from(["credrot", "update", "a", "--lock-ttl", "7d"]).is_ok());
    }

    fn help_of(args: &[&str]) -> String {
        let err = Cli::try_parse_from(args).unwrap_err();
        err.render().to_string()
    }

    #[test]
    fn help_separates_global_options_and_says_ranges() {
        for command in ["update", "rotate", "status"] {
            let help = help_of(&["credrot", command, "--help"]);
            let global = help.find("Global options:").expect("a global heading");
            let own = help
                .find("--dry-run")
                .or_else(|| help.find("--fail-on"))
                .unwrap();
            assert!(own < global, "{command}: own options first\n{help}");
            assert!(help[global..].contains("--profile"), "{help}");
            assert!(!help[..global].contains("--profile"), "{help}");
        }
        assert!(help_of(&["credrot", "rotate", "--help"]).contains("1 to 256"));
        assert!(help_of(&["credrot", "status", "--help"]).contains("1 to 256"));
        let status = help_of(&["credrot", "status", "--help"]);
        assert!(!status.contains("Also report"), "{status}");
        let main = help_of(&["credrot", "--help"]);
        assert!(main.contains("eval \"$(credrot session"), "{main}");
        let cp = help_of(&["credrot", "credential-process", "--help"]);
        assert!(
            cp.contains("Usage: credrot credential-process --profile NAME"),
            "{cp}"
        );
        let verify = help_of(&["credrot", "audit", "verify", "--help"]);
        assert!(verify.contains("2 when"), "{verify}");
        let generate = help_of(&["credrot", "generate", "--help"]);
        assert!(
            generate.contains("[default: 30d]") && generate.contains("[default: file]"),
            "{generate}"
        );
    }

    #[test]
    fn terraform_bin_is_an_update_option_only() {
        let err = usage_error(&["credrot", "rotate", "--path", "P", "--terraform-bin", "tf"]);
        assert!(err.contains("--terraform-bin"), "{err}");
        assert!(Cli::try_parse_from(["credrot", "update", "a", "--terraform-bin", "tf"]).is_ok());
    }

    #[test]
    fn no_lock_and_lock_ttl_conflict() {
        let err = usage_error(&["credrot", "update", "a", "--no-lock", "--lock-ttl", "1m"]);
        assert!(
            err.contains("--lock-ttl") && err.contains("--no-lock"),
            "{err}"
        );
        assert!(Cli::try_parse_from(["credrot", "update", "a", "--no-lock"]).is_ok());
    }

    #[test]
    fn an_invalid_iam_path_is_a_usage_error() {
        let err = usage_error(&["credrot", "rotate", "--path", "a b"]);
        assert!(err.contains("not a valid IAM path"), "{err}");
        let err = usage_error(&["credrot", "status", "--path", "a b"]);
        assert!(err.contains("not a valid IAM path"), "{err}");
        let cli = Cli::try_parse_from(["credrot", "rotate", "--path", "PSK"]).unwrap();
        assert!(matches!(cli.command, Command::Rotate { ref path, .. } if path == "/PSK/"));
    }
}
