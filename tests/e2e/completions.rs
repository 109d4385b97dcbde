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
fn man_writes_one_page_per_command_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = credrot_command(dir.path())
        .arg("man")
        .arg(&pages)
        .assert()
        .success();
    let listed = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let main = std::fs::read_to_string(pages.join("credrot.1")).unwrap();
    assert!(main.contains(".TH credrot 1"), "{main}");
    for command in [
        "list",
        "update",
        "rotate",
        "status",
        "generate",
        "profile-encrypt",
    ] {
        let page = pages.join(format!("credrot-{command}.1"));
        assert!(page.is_file(), "no page for {command}: {listed}");
        let listing = if command == "profile-encrypt" {
            std::fs::read_to_string(pages.join("credrot-profile.1")).unwrap()
        } else {
            main.clone()
        };
        assert!(
            listing.contains(&format!("credrot\\-{}(1)", command.replace('-', "\\-")))
                || listing.contains(&format!("credrot-{command}(1)")),
            "{command} not listed"
        );
    }
    let rotate = std::fs::read_to_string(pages.join("credrot-rotate.1")).unwrap();
    assert!(rotate.contains("concurrency"), "{rotate}");
    // Rendered by the real groff (when installed), the examples keep their columns.
    if let Ok(out) = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-P-cbou"])
        .arg(pages.join("credrot.1"))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\u{2212}'], "-");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("credrot list")
                    && l.contains("services in ./services.toml")),
            "{text}"
        );
    }
}
