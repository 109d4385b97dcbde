//! A throwaway home directory for the tests of a person's own credentials: `~/.aws`,
//! `~/.ssh` keys made by the real `ssh-keygen`, a cache directory, and an optional real
//! `ssh-agent`.

use crate::harness::isolated_command;
use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The passphrase of the test keys.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A home directory; everything credrot reads or writes for the user is inside it.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// An empty home with `~/.aws` and `~/.ssh`.
    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        // An empty config, as after `aws configure`: a missing one only adds SDK warnings.
        std::fs::write(dir.path().join(".aws/config"), "").unwrap();
        Home { dir }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `~/.aws/credentials`.
    pub fn credentials(&self) -> PathBuf {
        self.path().join(".aws/credentials")
    }

    /// `~/.aws/config`.
    pub fn config(&self) -> PathBuf {
        self.path().join(".aws/config")
    }

    /// `~/.cache/credrot/sessions`.
    pub fn session_cache(&self) -> PathBuf {
        self.path().join(".cache/credrot/sessions")
    }

    /// The default SSH key path, `~/.ssh/id_ed25519`.
    pub fn default_ssh_key(&self) -> PathBuf {
        self.path().join(".ssh/id_ed25519")
    }

    /// Write the credentials file (0600, as the AWS CLI does).
    pub fn write_credentials(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(self.credentials(), text).unwrap();
        std::fs::set_permissions(self.credentials(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }

    /// The credentials file's text.
    pub fn read_credentials(&self) -> String {
        std::fs::read_to_string(self.credentials()).unwrap()
    }

    /// Make a key with the real `ssh-keygen` at `path`: `kind` is `ed25519` or `rsa`,
    /// an empty passphrase leaves it unprotected.
    pub fn keygen(&self, kind: &str, passphrase: &str, path: &Path) -> PathBuf {
        let status = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                kind,
                "-N",
                passphrase,
                "-C",
                "credrot-test",
                "-f",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run ssh-keygen ({e}); install it with: apt-get install openssh-client"
                )
            });
        assert!(status.success(), "ssh-keygen failed");
        path.to_path_buf()
    }

    /// A passphrase-protected ED25519 key at `~/.ssh/id_ed25519`.
    pub fn protected_key(&self) -> PathBuf {
        self.keygen("ed25519", PASSPHRASE, &self.default_ssh_key())
    }

    /// credrot as this user: HOME, cache, AWS files and SSH settings all inside the home.
    /// No passphrase, no agent, no endpoint unless the test adds them.
    pub fn credrot(&self) -> Command {
        self.command(env!("CARGO_BIN_EXE_credrot"))
    }

    /// `program` with the environment of [`Home::credrot`].
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = isolated_command(program, self.path());
        cmd.env("HOME", self.path())
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.credentials())
            .env("AWS_CONFIG_FILE", self.config());
        cmd
    }

    /// [`Home::credrot`] with the key's passphrase in the environment, against `endpoint`.
    pub fn credrot_at(&self, endpoint: &str) -> Command {
        self.at(self.credrot(), endpoint)
    }

    /// `cmd` with the key's passphrase in the environment, against `endpoint`.
    pub fn at(&self, mut cmd: Command, endpoint: &str) -> Command {
        cmd.env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
            .env("AWS_ENDPOINT_URL", endpoint);
        cmd
    }
}

/// A running `ssh-agent`, killed on drop.
pub struct Agent {
    pid: String,
    /// Its socket, for SSH_AUTH_SOCK.
    pub socket: String,
}

impl Agent {
    /// Start an agent.
    pub fn start() -> Agent {
        let out = std::process::Command::new("ssh-agent")
            .arg("-s")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run ssh-agent ({e}); install it with: apt-get install openssh-client"
                )
            });
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let value = |name: &str| {
            text.split(';')
                .find_map(|part| part.trim().strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in ssh-agent output: {text}"))
                .to_string()
        };
        Agent {
            socket: value("SSH_AUTH_SOCK"),
            pid: value("SSH_AGENT_PID"),
        }
    }

    /// `ssh-add KEY`, the passphrase given through SSH_ASKPASS (never argv).
    pub fn add(&self, home: &Home, key: &Path) {
        let askpass = home.path().join("askpass.sh");
        std::fs::write(
            &askpass,
            "#!/bin/sh\nprintf '%s\\n' \"$TEST_SSH_PASSPHRASE\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        let out = std::process::Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .env("TEST_SSH_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
    }
}

/// stdout of a finished command as text.
pub fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).to_string()
}

/// stderr of a finished command as text.
pub fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

/// The credential_process document `credrot credential-process --profile P` prints.
pub fn credential_process(home: &Home, profile: &str) -> crate::harness::Key {
    let out = home
        .credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["credential-process", "--profile", profile])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["Version"], 1);
    crate::harness::key_of(&doc)
}
