//! Chaos: credrot killed with SIGKILL at random points (not fail points) of runs over every
//! store kind at once (file, SSM, Secrets Manager, 1Password), then run again with default
//! flags; afterwards the invariants of tests/e2e/invariants.rs must hold.
//!
//! A kill is synchronised on an event, never on a sleep: the fault proxy holds every AWS
//! request from the Kth on (K from a seeded RNG; set CREDROT_CHAOS_SEED to replay a seed)
//! and writes a file when it holds the first; the test then kills credrot and its `op`
//! children. Held requests either never reach the emulator or reach it and lose their
//! answer (`--hold-after-forward`), both chosen at random.
//!
//! Also defect 1 of issue 11 (a torn SSM pair), reproduced by holding the second
//! `PutParameter` of a rotation.

use crate::harness::{FaultProxy, Moto};
use crate::invariants::{self, with_fake_op, Fleet, Ledger, Snapshot, Store, EVERY_KIND};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a guard waits for credrot or the proxy before the test gives up (not a timed
/// assertion: only a hang reaches it).
const HANG: Duration = Duration::from_secs(300);

/// How a killed or finished run ended.
enum Ended {
    Killed,
    Finished(Output),
}

/// Spawn `cmd` in its own process group, wait until the proxy writes `hold_file` (then kill
/// the whole group with SIGKILL, as a crashing host or an OOM killer of a cgroup would, so
/// no `op` child of credrot lives on) or until credrot exits by itself.
fn run_until_held(mut cmd: Command, hold_file: &Path) -> Ended {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANG;
    loop {
        if hold_file.exists() {
            let group = format!("-{}", child.id());
            let killed = Command::new("kill")
                .args(["-KILL", "--", &group])
                .status()
                .unwrap();
            assert!(killed.success(), "kill -KILL -- {group} failed");
            let status = child.wait().unwrap();
            assert_eq!(status.code(), None, "credrot was not killed: {status:?}");
            return Ended::Killed;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let read = |mut f: std::fs::File| {
                use std::io::{Read, Seek};
                let mut buf = Vec::new();
                f.rewind().unwrap();
                f.read_to_end(&mut buf).unwrap();
                buf
            };
            return Ended::Finished(Output {
                status,
                stdout: read(out),
                stderr: read(err),
            });
        }
        assert!(Instant::now() < deadline, "credrot hangs: {cmd:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until the emulator has answered every request the proxy sent it, so the next run
/// (and the checks) see the state the killed run left.
fn settle(proxy: &FaultProxy) {
    let deadline = Instant::now() + HANG;
    while proxy.stats()["in_flight"] != 0 {
        assert!(Instant::now() < deadline, "the emulator never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The seed of this test's RNG: CREDROT_CHAOS_SEED, else a fresh one. Printed, and in every
/// failure message.
fn chaos_seed() -> u64 {
    let seed = std::env::var("CREDROT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("chaos seed: {seed} (replay with CREDROT_CHAOS_SEED={seed})");
    seed
}

/// One chaos scenario: an emulator, a config directory, the fake op's state, the users and
/// their stores, and what the stores ever handed out. The fault suite drives it too.
pub struct Chaos {
    pub moto: Moto,
    dir: tempfile::TempDir,
    op: tempfile::TempDir,
    fleet: Fleet,
    ledger: Ledger,
    pub rng: fastrand::Rng,
    pub seed: u64,
    /// What happened so far, for failure messages.
    log: Vec<String>,
    /// The credrot arguments of a run (after the global ones).
    run_args: Vec<String>,
}

impl Chaos {
    /// `users` (created under `path`, user i with i % 3 seed keys), stores of every kind,
    /// and `config` as services.toml; runs are `credrot --output json RUN_ARGS`.
    pub fn new(users: &[String], path: &str, config: &str, run_args: &[&str]) -> Chaos {
        let moto = Moto::start();
        let dir = tempfile::tempdir().unwrap();
        let op = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("services.toml"), config).unwrap();
        let mut ledger = Ledger::default();
        let mut fleet = Fleet { users: Vec::new() };
        for (i, user) in users.iter().enumerate() {
            moto.create_user(user, path);
            for _ in 0..(i % 3) {
                let key = moto.create_key(user, true);
                ledger.seed(user, &key);
            }
            fleet
                .users
                .push((user.clone(), Store::every_kind(dir.path(), op.path(), user)));
        }
        let seed = chaos_seed();
        Chaos {
            moto,
            dir,
            op,
            fleet,
            ledger,
            rng: fastrand::Rng::with_seed(seed),
            seed,
            log: Vec::new(),
            run_args: run_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn command(&self, endpoint: &str) -> Command {
        let mut cmd = self.moto.credrot_process(self.dir.path());
        with_fake_op(&mut cmd, self.op.path())
            .env("AWS_ENDPOINT_URL", endpoint)
            .args(["--output", "json"])
            .args(&self.run_args);
        cmd
    }

    /// One run killed once the proxy holds a request: from a random Kth in 1..=max_nth on.
    fn kill_round(&mut self, max_nth: u64) {
        let nth = self.rng.u64(1..=max_nth);
        let after_forward = self.rng.bool();
        let hold_dir = tempfile::tempdir().unwrap();
        let hold_file = hold_dir.path().join("held");
        let mut args = vec![
            "--hold-nth".to_string(),
            nth.to_string(),
            "--hold-file".to_string(),
            hold_file.to_string_lossy().into_owned(),
        ];
        if after_forward {
            args.push("--hold-after-forward".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proxy = FaultProxy::start(&self.moto.endpoint, 0.0, &args);
        let ended = run_until_held(self.command(&proxy.endpoint), &hold_file);
        settle(&proxy);
        let how = if after_forward {
            "answer held"
        } else {
            "not forwarded"
        };
        let entry = match ended {
            Ended::Killed => format!("killed at request {nth} ({how})"),
            Ended::Finished(out) => format!(
                "finished before request {nth} with {:?}: {}",
                out.status.code(),
                summary_line(&out)
            ),
        };
        println!("round {}: {entry}", self.log.len() + 1);
        self.log.push(entry);
        self.ledger.record(&self.fleet.snapshot(&self.moto));
    }

    /// One run through `proxy` that is not killed (the proxy injects faults): it may fail
    /// users, never crash.
    pub fn faulty_round(&mut self, proxy: &FaultProxy) {
        let out = self.command(&proxy.endpoint).output().unwrap();
        settle(proxy);
        let entry = format!(
            "faulty run exited {:?}: {}",
            out.status.code(),
            summary_line(&out)
        );
        println!("round {}: {entry}", self.log.len() + 1);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "credrot crashed: {out:?}\nseed {}",
            self.seed
        );
        self.log.push(entry);
        self.ledger.record(&self.fleet.snapshot(&self.moto));
    }

    /// The run with default flags that must converge, then the invariants.
    pub fn rerun_and_check(&mut self) {
        let at_start: Snapshot = self.fleet.snapshot(&self.moto);
        self.ledger.record(&at_start);
        let out = self.command(&self.moto.endpoint).output().unwrap();
        let context = format!(
            "seed {} (CREDROT_CHAOS_SEED={}), rounds {:#?}",
            self.seed, self.seed, self.log
        );
        assert!(
            out.status.success(),
            "the rerun failed: {}\n{}\n{context}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let unconverged: Vec<String> = summary["users"]
            .as_array()
            .unwrap()
            .iter()
            // `synced`: stores repaired, the due rotation left to the next run because it
            // would delete a key a store handed out when this run started. Converged.
            .filter(|u| !matches!(u["outcome"].as_str(), Some("rotated" | "fresh" | "synced")))
            .map(|u| {
                let name = u["user"].as_str().unwrap_or_default();
                let keys = crate::harness::keys_by_age(&self.moto, name);
                let stores: Vec<Option<&str>> = at_start
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|k| k.as_ref().map(|k| k.id.as_str()))
                    .collect();
                format!(
                    "{name}: {} {} keys {keys:?} stores at the start {stores:?}",
                    u["outcome"], u["note"]
                )
            })
            .collect();
        assert!(
            unconverged.is_empty(),
            "a rerun with default flags left users unconverged: {unconverged:#?}\nin-flight records: {:#?}\n{context}",
            inflight_records(self.dir.path())
        );
        let violations = invariants::violations(&self.moto, &self.fleet, &self.ledger, &at_start);
        assert!(violations.is_empty(), "{violations:#?}\n{context}");
    }
}

/// This host's in-flight records in the test directory (CREDROT_STATE_DIR), for messages.
fn inflight_records(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".credrot-state/inflight"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            format!("{}: {}", e.file_name().to_string_lossy(), text.trim())
        })
        .collect()
}

/// The users per outcome of a run's JSON summary, else the last line it printed to stderr.
fn summary_line(out: &Output) -> String {
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(s) => {
            let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
            for user in s["users"].as_array().into_iter().flatten() {
                *outcomes
                    .entry(user["outcome"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
            format!("{outcomes:?}")
        }
        Err(_) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string(),
    }
}

/// Six rounds over one service with a store of every kind, then the converging run; `run`
/// are the arguments of every run.
fn service_survives_random_kills(run: &[&str]) {
    let config = format!(
        "[services.app]\niam_user = \"chaos-app\"\ntags = [\"chaos\"]\nstores = [\n{EVERY_KIND}\n]\n"
    );
    let users = ["chaos-app".to_string()];
    let mut chaos = Chaos::new(&users, "/", &config, run);
    // A rotation over four stores makes 12 to 15 requests: K up to 18 sometimes lets a
    // run finish.
    for _ in 0..6 {
        chaos.kill_round(18);
    }
    chaos.rerun_and_check();
}

#[test]
fn a_service_with_every_store_kind_survives_random_kills() {
    service_survives_random_kills(&["update", "app"]);
}

/// The same with `--lock-ttl 0s` on every run, as an operator who knows that no other run is
/// alive would: it separates the other invariants from dead-run detection (defect 8).
#[test]
fn a_service_with_every_store_kind_survives_random_kills_when_no_run_is_alive() {
    service_survives_random_kills(&["update", "app", "--lock-ttl", "0s"]);
}

#[test]
fn a_path_of_fifty_users_with_every_store_kind_survives_random_kills() {
    const PATH: &str = "/Chaos/";
    let config = format!("[paths.Chaos]\nstores = [\n{EVERY_KIND}\n]\n");
    let users: Vec<String> = (0..50).map(|i| format!("chaos-{i:02}")).collect();
    let mut chaos = Chaos::new(&users, PATH, &config, &["rotate", "--path", PATH]);
    for _ in 0..3 {
        chaos.kill_round(500);
    }
    chaos.rerun_and_check();
}

/// Defect 1 of issue 11: credrot killed between the two `PutParameter` calls of an SSM
/// store leaves the new id with the old secret. `status` must call the store broken, and a
/// run with default flags must repair it from a verified key (here the SSM store comes
/// first, so the file store lags and a repair must not copy the torn pair into it).
#[test]
fn ssm_torn_pair_is_detected_and_repaired() {
    const USER: &str = "torn";
    const PREFIX: &str = "/torn/pg";
    let (moto, _seed) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    // max_age makes the rerun a converging one (CURRENT is young): it must repair, not
    // rotate the problem away.
    std::fs::write(
        dir.path().join("services.toml"),
        format!(
            "[services.pg]\niam_user = \"{USER}\"\nmax_age = \"30d\"\nstores = [\n{{ kind = \"ssm\", prefix = \"{PREFIX}\" }},\n{{ kind = \"file\", path = \"pg.json\" }}\n]\n"
        ),
    )
    .unwrap();
    // Forced: the seed key is young, and empty stores with a young key are not due yet
    // (defect 7, another test's subject).
    moto.credrot(dir.path())
        .args(["update", "pg", "--force"])
        .assert()
        .success();
    let (first, _) = moto.ssm_key(PREFIX).expect("the first rotation filled SSM");
    moto.assert_key_works_for(&first, USER);

    let hold_dir = tempfile::tempdir().unwrap();
    let hold_file = hold_dir.path().join("held");
    let proxy = FaultProxy::start(
        &moto.endpoint,
        0.0,
        &[
            "--hold-action",
            "PutParameter",
            "--hold-nth",
            "2",
            "--hold-file",
            hold_file.to_str().unwrap(),
        ],
    );
    let mut forced = moto.credrot_process(dir.path());
    forced
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .args(["update", "pg", "--force"]);
    match run_until_held(forced, &hold_file) {
        Ended::Killed => {}
        Ended::Finished(out) => panic!(
            "the forced rotation made fewer than two PutParameter calls: {out:?}; {}",
            proxy.stats()
        ),
    }
    settle(&proxy);
    drop(proxy);

    let (in_ssm, _) = moto.ssm_key(PREFIX).expect("SSM still has both parameters");
    let torn = moto.whoami(&in_ssm).is_none();
    println!(
        "after the kill SSM holds id {} {}",
        in_ssm.id,
        if torn {
            "with a secret that is not its own (torn)"
        } else {
            "with its own secret"
        }
    );
    if torn {
        let out = moto
            .credrot_process(dir.path())
            .args(["--output", "json", "status", "pg"])
            .output()
            .unwrap();
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
        println!("status after the kill: {}", status[0]);
        let verdict = status[0]["verdict"].as_str().unwrap_or("");
        let ssm_named = status[0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap_or("").contains(&format!("ssm:{PREFIX}")));
        assert!(
            !matches!(verdict, "ok" | "unused" | "due") && ssm_named,
            "status does not report the torn SSM pair: {status:#}"
        );
    }

    let rerun = moto
        .credrot_process(dir.path())
        .args(["--output", "json", "update", "pg"])
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&rerun.stdout),
        String::from_utf8_lossy(&rerun.stderr)
    );
    let fleet = Fleet {
        users: vec![(
            USER.to_string(),
            vec![
                Store::Ssm(PREFIX.to_string()),
                Store::File(dir.path().join("pg.json")),
            ],
        )],
    };
    let (repaired, _) = moto.ssm_key(PREFIX).unwrap();
    moto.assert_key_works_for(&repaired, USER);
    let mut ledger = Ledger::default();
    ledger.seed(USER, &first);
    ledger.seed(USER, &in_ssm);
    // Nothing but the pair itself is checked against what the run started with: the torn
    // store handed out no working key.
    let none: Snapshot = [(USER.to_string(), vec![None, None])].into();
    let violations = invariants::violations(&moto, &fleet, &ledger, &none);
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        moto.keys(USER).contains(&(first.id.clone(), true)),
        "the key the file store handed out all along was deleted"
    );
}
