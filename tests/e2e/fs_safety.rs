//! Filesystem safety of the file store and `-o`: symlinks are written through, special
//! files are refused without blocking or reading them, a user's name cannot lead a path
//! out of its directory, and the directories credrot makes are private.

use crate::harness::{
    credrot_process, key_of, mode_of, read_json, write_key_file, write_pg_service, Key, Moto,
    Tripwire,
};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const USER: &str = "pg-user";

/// A watchdog, not a timing assertion: without the fixes some cases block forever (a FIFO
/// opened for reading) or read forever (/dev/zero), and the test must then fail, not hang.
const WATCHDOG: Duration = Duration::from_secs(300);

/// `cmd`, run by `sh` after `prelude` (e.g. `umask 000`), with the same directory and
/// environment.
fn in_shell(cmd: Command, prelude: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    sh
}

/// Run `cmd` with at most 2 GiB of address space (so a read of /dev/zero without the fix
/// fails instead of taking the shared machine's memory) under the watchdog; returns the
/// exit code and everything printed (stdout, where the summary says why a user failed,
/// then stderr).
fn run_capped(cmd: Command) -> (Option<i32>, String) {
    let out = assert_cmd::Command::from_std(in_shell(cmd, "ulimit -v 2097152"))
        .timeout(WATCHDOG)
        .output()
        .expect("credrot runs");
    // The summary (stdout) says why a user failed; stderr says that some did.
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

fn update(moto: &Moto, dir: &Path, extra: &[&str]) {
    moto.credrot(dir)
        .args(["update", "pg"])
        .args(extra)
        .assert()
        .success();
}

#[test]
fn a_symlinked_store_file_is_written_through_and_its_key_is_never_deleted() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    // Consumers read real/pg.json; the store's path is a link to it.
    std::fs::create_dir_all(dir.path().join("real")).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    let target = dir.path().join("real/pg.json");
    write_key_file(&target, &old);
    let link = dir.path().join("secrets/pg.json");
    symlink("../real/pg.json", &link).unwrap();
    write_pg_service(
        dir.path(),
        USER,
        r#"{ kind = "file", path = "secrets/pg.json" }"#,
    );

    update(&moto, dir.path(), &[]);
    assert!(is_symlink(&link), "the link was replaced by a file");
    let first = key_of(&read_json(&target));
    assert_ne!(first, old, "the link's target holds the new key");
    moto.assert_key_works_for(&first, USER);
    assert_eq!(mode_of(&target), 0o600);
    assert_eq!(
        std::fs::read_dir(dir.path().join("real")).unwrap().count(),
        1,
        "no temporary file is left beside the target"
    );

    // The next rotation deletes the old key, never the one the target hands out.
    update(&moto, dir.path(), &[]);
    assert!(is_symlink(&link));
    let second = key_of(&read_json(&target));
    moto.assert_key_works_for(&second, USER);
    moto.assert_key_works_for(&first, USER);
    assert!(moto.whoami(&old).is_none(), "LAST is deleted");
}

#[test]
fn a_symlinked_outfile_is_written_through() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_key_file(&dir.path().join("pg.json"), &old);
    write_pg_service(dir.path(), USER, r#"{ kind = "file", path = "pg.json" }"#);
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let target = dir.path().join("out/keys.json");
    std::fs::write(&target, "{}").unwrap();
    let link = dir.path().join("keys.json");
    symlink("out/keys.json", &link).unwrap();

    update(&moto, dir.path(), &["-o", "keys.json"]);
    assert!(is_symlink(&link), "the -o link was replaced by a file");
    let new = key_of(&read_json(&target)[USER]);
    assert_eq!(new, key_of(&read_json(&dir.path().join("pg.json"))));
    moto.assert_key_works_for(&new, USER);
    assert_eq!(mode_of(&target), 0o600);
}

/// What one special-file case puts at the store's path, and what the error must say.
struct Special {
    name: &'static str,
    make: fn(&Path),
    expect: &'static str,
}

const SPECIALS: &[Special] = &[
    Special {
        name: "FIFO",
        make: |path| {
            let ok = Command::new("mkfifo").arg(path).status().unwrap();
            assert!(ok.success());
        },
        expect: "is a named pipe (FIFO), not a regular file",
    },
    Special {
        name: "symlink to /dev/zero",
        make: |path| symlink("/dev/zero", path).unwrap(),
        expect: "its target /dev/zero is a character device",
    },
    Special {
        name: "dangling symlink",
        make: |path| symlink("gone/pg.json", path).unwrap(),
        expect: "is a symlink to gone/pg.json, which does not exist",
    },
    Special {
        name: "symlink loop",
        make: |path| symlink("pg.json", path).unwrap(),
        expect: "its symlink cannot be followed",
    },
];

#[test]
fn special_files_at_a_store_path_fail_fast_and_change_nothing_in_iam() {
    let (moto, key) = Moto::start_with_user(USER);
    for case in SPECIALS {
        let dir = tempfile::tempdir().unwrap();
        write_pg_service(dir.path(), USER, r#"{ kind = "file", path = "pg.json" }"#);
        let path = dir.path().join("pg.json");
        (case.make)(&path);
        let kind_before = std::fs::symlink_metadata(&path).unwrap().file_type();

        let mut cmd = moto.credrot_process(dir.path());
        cmd.args(["update", "pg"]);
        let (code, stderr) = run_capped(cmd);
        assert_eq!(code, Some(1), "{}: {stderr}", case.name);
        assert!(
            stderr.contains("pg.json") && stderr.contains(case.expect),
            "{}: expected {:?} in {stderr}",
            case.name,
            case.expect
        );
        assert_eq!(
            moto.keys(USER),
            vec![(key.id.clone(), true)],
            "{}: IAM changed",
            case.name
        );
        assert_eq!(
            std::fs::symlink_metadata(&path).unwrap().file_type(),
            kind_before,
            "{}: the path was replaced",
            case.name
        );
    }
    moto.assert_key_works_for(&key, USER);
}

#[test]
fn a_user_named_dot_dot_under_a_user_template_writes_nothing_outside() {
    let moto = Moto::start();
    let path = "/Templated/";
    let mut before = Vec::new();
    for user in ["..", "app"] {
        moto.create_user(user, path);
        before.push(moto.create_key(user, true));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Templated]\nstores = [{ kind = \"file\", path = \"secrets/{user}/key.json\" }]\n",
    )
    .unwrap();

    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", "Templated"])
        .output()
        .unwrap();
    // The summary (stdout) says why the user failed.
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("file:secrets/{user}/key.json")
            && stderr.contains("expands to \"..\"")
            && stderr.contains("would leave the store's directory"),
        "{stderr}"
    );
    // secrets/../key.json would be key.json beside services.toml.
    assert!(!dir.path().join("key.json").exists(), "written outside");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The harness keeps this host's in-flight records there (CREDROT_STATE_DIR).
        .filter(|name| name != ".credrot-state")
        .collect();
    names.sort();
    assert_eq!(names, ["secrets", "services.toml"]);
    assert_eq!(
        moto.keys(".."),
        vec![(before[0].id.clone(), true)],
        "IAM changed for '..'"
    );
    // The other user of the run is rotated as usual.
    let app: Key = key_of(&read_json(&dir.path().join("secrets/app/key.json")));
    moto.assert_key_works_for(&app, "app");
    assert_eq!(moto.keys("app").len(), 2);
}

#[test]
fn unusable_outfiles_exit_2_before_any_aws_call_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_pg_service(dir.path(), USER, r#"{ kind = "file", path = "pg.json" }"#);
    let fifo = dir.path().join("fifo.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (outfile, expect) in [
        ("/dev/full", "is a character device, not a regular file"),
        ("fifo.json", "is a named pipe (FIFO), not a regular file"),
        (
            "missing-dir/keys.json",
            "its directory missing-dir does not exist, and -o creates no directory",
        ),
    ] {
        for dry_run in [false, true] {
            let tripwire = Tripwire::new();
            let mut cmd = credrot_process(dir.path());
            cmd.env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
                .env("AWS_SECRET_ACCESS_KEY", "example")
                .args(["--endpoint-url", &tripwire.endpoint, "update", "pg"])
                .args(["-o", outfile]);
            if dry_run {
                cmd.arg("--dry-run");
            }
            let (code, stderr) = run_capped(cmd);
            assert_eq!(code, Some(2), "-o {outfile}: {stderr}");
            assert!(
                stderr.contains(outfile) && stderr.contains(expect),
                "-o {outfile}: expected {expect:?} in {stderr}"
            );
            assert!(!tripwire.tripped(), "-o {outfile}: an AWS call was made");
        }
    }
    assert!(
        !dir.path().join("missing-dir").exists(),
        "-o made a directory"
    );
    assert!(!dir.path().join("pg.json").exists());
}

#[test]
fn directories_credrot_creates_are_private_under_umask_000() {
    let (moto, _key) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_pg_service(
        dir.path(),
        USER,
        r#"{ kind = "file", path = "secrets/deep/pg.json" }"#,
    );
    let mut toml = std::fs::read_to_string(dir.path().join("services.toml")).unwrap();
    toml.push_str("\n[audit]\npath = \"audit/credrot.log\"\n");
    std::fs::write(dir.path().join("services.toml"), toml).unwrap();

    let mut cmd = moto.credrot_process(dir.path());
    cmd.args(["update", "pg"]);
    let out = in_shell(cmd, "umask 000").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for made in ["secrets", "secrets/deep", "audit"] {
        assert_eq!(mode_of(&dir.path().join(made)), 0o700, "{made}");
    }
    for file in ["secrets/deep/pg.json", "audit/credrot.log"] {
        assert_eq!(mode_of(&dir.path().join(file)), 0o600, "{file}");
    }
    assert!(!stderr.contains("writable by"), "{stderr}");

    // A store directory others can write to is worth a warning (the run goes on).
    let deep = dir.path().join("secrets/deep");
    std::fs::set_permissions(&deep, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("secrets/deep holding a key file is writable by everyone"),
        "{stderr}"
    );
}
