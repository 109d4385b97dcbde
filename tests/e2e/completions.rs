//! Shell completions and the man page are generated from the real command line.

use crate::harness::credrot_command;

#[test]
fn completion_scripts_name_every_command_and_bash_accepts_its_script() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = credrot_command(dir.path())
            .args(["completions", shell])
            .assert()
            .success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        for command in ["update", "rotate", "status", "generate", "session"] {
            assert!(
                script.contains(command),
                "{shell}: no {command} in the script"
            );
        }
        if shell == "bash" {
            let path = dir.path().join("credrot.bash");
            std::fs::write(&path, &script).unwrap();
            let syntax = std::process::Command::new("bash")
                .arg("-n")
                .arg(&path)
                .status()
                .unwrap();
            assert!(syntax.success(), "bash rejects its completion script");
        }
    }
}

#[test]
fn the_man_page_is_roff_with_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = credrot_command(dir.path()).arg("man").assert().success();
    let page = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        page.starts_with(".ie") || page.contains(".TH credrot 1"),
        "{page}"
    );
    assert!(page.contains(".TH credrot 1"));
    for command in ["list", "update", "rotate", "status", "generate"] {
        assert!(page.contains(command), "no {command} in the man page");
    }
}
