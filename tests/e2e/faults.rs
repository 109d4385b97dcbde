//! The fault-injection suite: rotations through a proxy that fails 15% of the requests
//! (HTTP 500, Throttling, connection resets before and after the emulator did the work).
//! After the runs and one clean run, every user must hold a working key that its store hands
//! out, at most two keys, no key newer than the stored one (an orphan), and an audit log
//! whose hash chain verifies. A second test does the same over every store kind at once.

use crate::chaos::Chaos;
use crate::harness::{key_of, keys_by_age, read_json, FaultProxy, Moto};

const PATH: &str = "/Faulty/";
const USERS: usize = 40;
const MIN_ROTATIONS: u64 = 200;

#[test]
fn two_hundred_rotations_under_injected_faults_keep_every_invariant() {
    let moto = Moto::start();
    let users: Vec<String> = (0..USERS).map(|i| format!("faulty-{i:02}")).collect();
    for (i, user) in users.iter().enumerate() {
        moto.create_user(user, PATH);
        for _ in 0..(i % 3) {
            moto.create_key(user, true);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Faulty]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n\n[audit]\npath = \"audit.log\"\n",
    )
    .unwrap();
    let proxy = FaultProxy::start(&moto.endpoint, 0.15, &["--seed", "7"]);

    let (mut rotations, mut failed_users, mut runs, mut retries) = (0u64, 0u64, 0, 0u64);
    while rotations < MIN_ROTATIONS {
        runs += 1;
        assert!(
            runs <= 12,
            "too few rotations succeed under faults: {rotations} after {runs} runs"
        );
        let out = moto
            .rotate_path_json(dir.path(), PATH)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .args(["--lock-ttl", "30s"])
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "credrot crashed: {out:?}"
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no summary: {}", String::from_utf8_lossy(&out.stderr)));
        rotations += summary["rotated"].as_u64().unwrap();
        failed_users += summary["failed"].as_u64().unwrap();
        retries += summary["aws_calls"]["retries"].as_u64().unwrap();
    }

    // One clean run, once the lock TTL has passed, converges whatever the faults left
    // behind (keys whose CreateAccessKey response was lost look like runs in progress
    // until then).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    moto.credrot(dir.path())
        .args(["rotate", "--path", PATH, "--lock-ttl", "1s"])
        .assert()
        .success();
    let mut violations = Vec::new();
    for user in &users {
        let stored = key_of(&read_json(&dir.path().join(format!("keys/{user}.json"))));
        let keys = keys_by_age(&moto, user);
        if moto
            .whoami(&stored)
            .map(|arn| arn.ends_with(&format!("/{user}")))
            != Some(true)
        {
            violations.push(format!("{user}: the stored key does not work"));
        }
        if keys.len() > 2 {
            violations.push(format!("{user}: {} keys", keys.len()));
        }
        match keys.iter().position(|k| k.0 == stored.id) {
            None => violations.push(format!("{user}: the stored key is not in IAM")),
            Some(i) if i + 1 != keys.len() => violations.push(format!(
                "{user}: a key newer than the stored one is orphaned"
            )),
            Some(_) => {}
        }
    }
    let audit = moto
        .credrot_process(dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    if !audit.status.success() {
        violations.push(format!(
            "audit log: {}",
            String::from_utf8_lossy(&audit.stdout)
        ));
    }
    let stats = proxy.stats();
    println!(
        "fault suite: {runs} runs, {rotations} rotations, {failed_users} user failures reported, {} requests, {} faults injected ({} 500s, {} throttled, {} resets before, {} resets after), {retries} SDK retries (as credrot reports them), {} invariant violations",
        stats["requests"], stats["faults"], stats["error_500"], stats["throttled"], stats["reset_before"], stats["reset_after"], violations.len()
    );
    // Every retry answers a fault; most faults are retried (the rest exhausted a call's
    // attempts, or hit credrot's own STS retry loop).
    let faults = stats["faults"].as_u64().unwrap();
    assert!(
        retries > 0 && retries <= faults,
        "{retries} retries for {faults} faults"
    );
    assert!(
        stats["faults"].as_u64().unwrap() * 100 >= stats["requests"].as_u64().unwrap() * 10,
        "{stats}"
    );
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The fault suite over every store kind at once (file, SSM, Secrets Manager, 1Password):
/// runs through a proxy failing 15% of the AWS requests, then one clean run with default
/// flags that must converge and leave every invariant of tests/e2e/invariants.rs.
#[test]
fn every_store_kind_under_injected_faults_converges_with_default_flags() {
    const PATH: &str = "/FaultyAll/";
    let config = format!(
        "[paths.FaultyAll]\nstores = [\n{}\n]\n",
        crate::invariants::EVERY_KIND
    );
    let users: Vec<String> = (0..16).map(|i| format!("all-{i:02}")).collect();
    let mut chaos = Chaos::new(&users, PATH, &config, &["rotate", "--path", PATH]);
    let proxy_seed = chaos.rng.u32(..).to_string();
    let proxy = FaultProxy::start(&chaos.moto.endpoint, 0.15, &["--seed", &proxy_seed]);
    for _ in 0..3 {
        chaos.faulty_round(&proxy);
    }
    let stats = proxy.stats();
    println!("faults over every store kind: {stats}");
    assert!(
        stats["faults"].as_u64().unwrap() * 100 >= stats["requests"].as_u64().unwrap() * 10,
        "{stats}"
    );
    drop(proxy);
    chaos.rerun_and_check();
}
