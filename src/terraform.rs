//! Terraform (or OpenTofu) as the source of a service's key: teams that create keys with
//! `aws_iam_access_key` and `time_rotating` only need them verified and pushed to the stores.

use crate::rotation::{KeyMaker, RotateError};
use crate::secret::AccessKey;
use serde_json::Value;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why the key could not be read from Terraform.
#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    /// Neither binary is installed.
    #[error("neither terraform nor tofu is on PATH; install one, or pass --terraform-bin PATH")]
    NoBinary,
    /// The binary could not be started.
    #[error("cannot run {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: String,
        /// Why.
        source: std::io::Error,
    },
    /// `output -json` failed.
    #[error("'{bin} output -json' in {} failed: {stderr}; check terraform_dir and that the state is reachable", dir.display())]
    Failed {
        /// The binary.
        bin: String,
        /// Where it ran.
        dir: PathBuf,
        /// What it said (stderr; never its stdout, which holds the secret).
        stderr: String,
    },
    /// A state, plan or apply command failed.
    #[error("'{bin} {command}' in {} failed: {stderr}", dir.display())]
    Command {
        /// The binary.
        bin: String,
        /// The command and its arguments (never a secret).
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// Terraform's error, from stderr.
        stderr: String,
    },
    /// `apply -target` left the outputs naming the key they named before.
    #[error("'{bin} apply -target={address}' in {} made no new key: outputs {prefix}_access_key_id still name {key_id}; check that terraform_resource is the resource those outputs read", dir.display())]
    NoNewKey {
        /// The binary.
        bin: String,
        /// Where it ran.
        dir: PathBuf,
        /// terraform_resource.
        address: String,
        /// output_prefix.
        prefix: String,
        /// The key the outputs still name.
        key_id: String,
    },
    /// An output is missing or not a string.
    #[error("'{bin} output -json' in {} has no string output '{name}'; check output_prefix (outputs <prefix>_access_key_id and <prefix>_secret_access_key)", dir.display())]
    MissingOutput {
        /// The binary.
        bin: String,
        /// Where it ran.
        dir: PathBuf,
        /// The output looked for.
        name: String,
    },
}

/// `bin`, else `terraform`, else `tofu`, whichever is on PATH.
pub fn find_binary(bin: Option<&Path>) -> Result<PathBuf, TerraformError> {
    if let Some(bin) = bin {
        return Ok(bin.to_path_buf());
    }
    which::which("terraform")
        .or_else(|_| which::which("tofu"))
        .map_err(|_| TerraformError::NoBinary)
}

/// Read `<prefix>_access_key_id` and `<prefix>_secret_access_key` from `terraform output`.
pub async fn read_key(bin: &Path, dir: &Path, prefix: &str) -> Result<AccessKey, TerraformError> {
    let shown = bin.display().to_string();
    let out = spawn(bin, dir, &["output", "-json"]).await?;
    // stdout holds the secret: keep it in memory that is wiped on drop.
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(TerraformError::Failed {
            bin: shown,
            dir: dir.to_path_buf(),
            stderr: error_text(&stderr),
        });
    }
    let outputs: Value = serde_json::from_slice(&stdout).unwrap_or(Value::Null);
    let value = |suffix: &str| {
        let name = format!("{prefix}_{suffix}");
        outputs[&name]["value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| TerraformError::MissingOutput {
                bin: shown.clone(),
                dir: dir.to_path_buf(),
                name,
            })
    };
    let id = value("access_key_id")?;
    let secret = Zeroizing::new(value("secret_access_key")?);
    Ok(AccessKey::new(id, secret.as_str()))
}

/// Run `bin -chdir=DIR ARGS` with `TF_IN_AUTOMATION=1` and no stdin (it never prompts);
/// output captured. No secret is ever an argument.
async fn spawn(
    bin: &Path,
    dir: &Path,
    args: &[&str],
) -> Result<std::process::Output, TerraformError> {
    tokio::process::Command::new(bin)
        .arg(format!("-chdir={}", dir.display()))
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| TerraformError::Spawn {
            bin: bin.display().to_string(),
            source,
        })
}

/// Terraform's error message from its stderr: the `Error:` block without its box drawing
/// and colours, else the last line.
fn error_text(stderr: &str) -> String {
    let plain = strip_ansi(stderr);
    let lines: Vec<&str> = plain.lines().collect();
    let unboxed = |l: &str| {
        l.trim_start_matches(['│', '╷', '╵', ' '])
            .trim()
            .to_string()
    };
    let block: Vec<String> = match lines.iter().position(|l| unboxed(l).starts_with("Error:")) {
        // The block ends where its box closes.
        Some(start) => lines[start..]
            .iter()
            .take_while(|l| l.trim() != "╵")
            .map(|l| unboxed(l))
            .filter(|l| !l.is_empty())
            .take(4)
            .collect(),
        None => lines
            .iter()
            .rev()
            .map(|l| unboxed(l))
            .find(|l| !l.is_empty())
            .into_iter()
            .collect(),
    };
    match block.join(" ") {
        text if text.is_empty() => "no message".to_string(),
        text => text,
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Run a state, plan or apply command; its stdout (no secret: Terraform hides sensitive
/// values there) on success.
async fn command(bin: &Path, dir: &Path, args: &[&str]) -> Result<String, TerraformError> {
    let out = spawn(bin, dir, args).await?;
    if !out.status.success() {
        return Err(TerraformError::Command {
            bin: bin.display().to_string(),
            command: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: error_text(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(strip_ansi(&String::from_utf8_lossy(&out.stdout)))
}

/// Whether Terraform's state holds `address` (`state list`).
pub async fn state_has(bin: &Path, dir: &Path, address: &str) -> Result<bool, TerraformError> {
    let listed = command(bin, dir, &["state", "list"]).await?;
    Ok(listed.lines().any(|l| l.trim() == address))
}

/// `plan -target=ADDRESS`: changes nothing; its summary line (`Plan: ...`, `No changes. ...`).
pub async fn plan_target(bin: &Path, dir: &Path, address: &str) -> Result<String, TerraformError> {
    let target = format!("-target={address}");
    let out = command(bin, dir, &["plan", &target, "-input=false", "-no-color"]).await?;
    Ok(out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Plan:") || l.starts_with("No changes."))
        .unwrap_or("planned")
        .to_string())
}

/// A service's key made anew by Terraform: `terraform state rm ADDRESS` (Terraform forgets
/// the current key, which stays valid in IAM and in the stores), then `terraform apply
/// -target=ADDRESS -auto-approve` (a new key), then the new outputs. Never `apply -replace`,
/// which would delete the current key before the stores hold its successor.
pub struct TerraformKeyMaker {
    /// The terraform or tofu binary.
    pub bin: PathBuf,
    /// Where it runs.
    pub dir: PathBuf,
    /// The outputs' prefix.
    pub prefix: String,
    /// The `aws_iam_access_key` resource.
    pub address: String,
    /// The key the outputs named before: a new key must differ.
    pub previous: String,
}

impl TerraformKeyMaker {
    async fn run(&self) -> Result<AccessKey, TerraformError> {
        let (bin, dir, address) = (&self.bin, &self.dir, self.address.as_str());
        // A run stopped after `state rm` left the resource out of the state already.
        if state_has(bin, dir, address).await? {
            command(bin, dir, &["state", "rm", address]).await?;
            tracing::info!(address, "terraform state rm: Terraform forgot the current key, which stays in IAM and the stores");
        }
        fail::fail_point!("after-terraform-state-rm", |_| crate::failpoints::crash());
        let target = format!("-target={address}");
        command(
            bin,
            dir,
            &[
                "apply",
                &target,
                "-auto-approve",
                "-input=false",
                "-no-color",
            ],
        )
        .await?;
        fail::fail_point!("after-terraform-apply", |_| crate::failpoints::crash());
        let key = read_key(bin, dir, &self.prefix).await?;
        if key.id == self.previous {
            return Err(TerraformError::NoNewKey {
                bin: bin.display().to_string(),
                dir: dir.to_path_buf(),
                address: self.address.clone(),
                prefix: self.prefix.clone(),
                key_id: key.id.clone(),
            });
        }
        Ok(key)
    }
}

#[async_trait::async_trait]
impl KeyMaker for TerraformKeyMaker {
    fn describe(&self) -> String {
        format!(
            "create a new key: terraform state rm {0}, then terraform apply -target={0} in {1}",
            self.address,
            self.dir.display()
        )
    }

    async fn make(&self, _user: &str) -> Result<AccessKey, RotateError> {
        self.run()
            .await
            .map_err(|e| RotateError::KeyMaker(Box::new(e)))
    }

    fn kept_because(&self) -> String {
        format!(
            "Terraform's state holds it (outputs {}_*), and the next run hands it on",
            self.prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_errors_are_read_without_box_drawing_or_colours() {
        let stderr = "\u{1b}[31m╷\u{1b}[0m\n\u{1b}[31m│\u{1b}[0m \u{1b}[1mError: \u{1b}[0mInvalid target address\n│ \n│ No matching objects found.\n╵\n";
        assert_eq!(
            error_text(stderr),
            "Error: Invalid target address No matching objects found."
        );
        assert_eq!(
            error_text("warning\nsomething broke\n\n"),
            "something broke"
        );
        assert_eq!(error_text(""), "no message");
    }
}
