//! The progress bar of a rotation: at a terminal (a pseudo-terminal driven by
//! tests/support/pty_drive.py) it shows users done/total, rotated and failed so far and the
//! elapsed time; with stdout not a terminal there is none.

use crate::harness::Moto;
use std::path::Path;

const PATH: &str = "/Tty/";
const USERS: usize = 40;
/// The first users of the path, whose store holds a file credrot did not write: they fail
/// before any IAM change, and the bar counts them.
const BROKEN: usize = 3;

/// 40 users under /Tty/ with a file store each; the first three stores are unreadable.
fn setup(moto: &Moto) -> tempfile::TempDir {
    for i in 0..USERS {
        moto.create_user(&format!("tty-{i:02}"), PATH);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Tty]\nstores = [{ kind = \"file\", path = \"secrets/{user}.json\" }]\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for i in 0..BROKEN {
        let file = dir.path().join(format!("secrets/tty-{i:02}.json"));
        std::fs::write(file, "not a key file\n").unwrap();
    }
    dir
}

/// `command` (a shell command line; `$CREDROT` is the binary) run on a pseudo-terminal:
/// everything it printed there, and its exit code.
fn at_a_terminal(moto: &Moto, dir: &Path, command: &str) -> (String, i32) {
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pty_drive.py");
    let out = crate::harness::isolated_process("python3", dir)
        .env("AWS_ACCESS_KEY_ID", &moto.admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("CREDROT", env!("CARGO_BIN_EXE_credrot"))
        .args([driver, "--", "sh", "-c", command])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code().unwrap_or(-1),
    )
}

/// The (rotated, failed) counts of every frame of the bar on `screen`.
fn bar_counts(screen: &str) -> Vec<(usize, usize)> {
    let number = |s: &str| -> Option<usize> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    screen
        .split(&format!("/{USERS} users done: rotated "))
        .skip(1)
        .filter_map(|frame| {
            let rotated = number(frame)?;
            let failed = number(frame.split(", failed ").nth(1)?)?;
            Some((rotated, failed))
        })
        .collect()
}

#[test]
fn at_a_terminal_the_bar_shows_done_total_rotated_failed_and_elapsed_time() {
    let moto = Moto::start();
    let dir = setup(&moto);
    let (screen, code) = at_a_terminal(
        &moto,
        dir.path(),
        &format!("exec \"$CREDROT\" -v rotate --path {PATH} --concurrency 2"),
    );
    assert_eq!(code, 1, "three users fail:\n{screen}");
    let frames = bar_counts(&screen);
    assert!(!frames.is_empty(), "no progress bar:\n{screen}");
    assert!(screen.contains("s elapsed"), "no elapsed time:\n{screen}");
    // Counts only grow, never past the users there are.
    for pair in frames.windows(2) {
        assert!(
            pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1,
            "{frames:?}"
        );
    }
    let (rotated, failed) = *frames.last().unwrap();
    assert!(rotated <= USERS - BROKEN && failed <= BROKEN, "{frames:?}");
    // The broken users come first; the bar is drawn again as the others finish.
    assert!(
        frames.iter().any(|&(r, f)| r > 0 && f == BROKEN),
        "no frame with rotated users and the {BROKEN} failed ones:\n{frames:?}\n{screen}"
    );
    // A log line goes above the bar, not into it: the bar is cleared (a carriage return,
    // then erase-line) before each warning, and drawn again after it.
    assert!(screen.contains("rotation failed"), "{screen}");
    for line in screen.lines().filter(|l| l.contains("rotation failed")) {
        let before = &line[..line.find("rotation failed").unwrap()];
        let own = before.rsplit('\r').next().unwrap_or(before);
        assert!(
            !own.contains("users done"),
            "a warning drawn into the bar: {line:?}"
        );
    }
    // The summary follows the bar.
    assert!(
        screen.contains(&format!("{} rotated, {BROKEN} failed", USERS - BROKEN)),
        "{screen}"
    );
}

#[test]
fn without_a_terminal_on_stdout_there_is_no_bar() {
    let moto = Moto::start();
    let dir = setup(&moto);
    // stderr is the terminal, stdout a file: the bar would mix into what a script reads
    // from a terminal it does not look at, so there is none.
    let (screen, code) = at_a_terminal(
        &moto,
        dir.path(),
        &format!("exec \"$CREDROT\" -v rotate --path {PATH} --concurrency 2 > summary.txt"),
    );
    assert_eq!(code, 1, "{screen}");
    assert!(
        !screen.contains("users done"),
        "a bar with stdout redirected:\n{screen}"
    );
    assert!(
        screen.contains("rotation failed"),
        "stderr is still shown:\n{screen}"
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
    assert!(
        summary.contains(&format!("{} rotated", USERS - BROKEN)),
        "{summary}"
    );
    assert!(!summary.contains("users done"), "{summary}");

    // Neither a terminal: pipes, as in CI. The run is a rerun: the broken three still fail.
    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", PATH, "--force"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(!stderr.contains("users done"), "{stderr}");
    assert!(!stdout.contains("users done"), "{stdout}");
    assert!(stdout.contains(&format!("{BROKEN} failed")), "{stdout}");
}
