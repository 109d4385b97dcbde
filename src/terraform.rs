//! Terraform (or OpenTofu) as the source of a service's key: teams that create keys with
//! `aws_iam_access_key` and `time_rotating` only need them verified and pushed to the stores.

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
    let out = tokio::process::Command::new(bin)
        .arg(format!("-chdir={}", dir.display()))
        .args(["output", "-json"])
        .env("TF_IN_AUTOMATION", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| TerraformError::Spawn {
            bin: shown.clone(),
            source,
        })?;
    // stdout holds the secret: keep it in memory that is wiped on drop.
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(TerraformError::Failed {
            bin: shown,
            dir: dir.to_path_buf(),
            stderr: stderr
                .trim()
                .lines()
                .last()
                .unwrap_or("no message")
                .to_string(),
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
