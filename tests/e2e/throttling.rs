//! Raising --concurrency against a throttling endpoint slows credrot down instead of
//! failing it: the SDK's adaptive retry backs off when the endpoint throttles.
//!
//! The proxy throttles by count (every tenth first attempt of each action), not above a
//! rate: the same requests are throttled however fast or slow the machine is.

use crate::harness::{FaultProxy, Moto};

const PATH: &str = "/Throttled/";

#[test]
fn high_concurrency_against_a_rate_limit_still_rotates_everyone() {
    let moto = Moto::start();
    let users: Vec<String> = (0..30).map(|i| format!("rl-{i:02}")).collect();
    for user in &users {
        moto.create_user(user, PATH);
    }
    let proxy = FaultProxy::start(
        &moto.endpoint,
        0.0,
        &["--throttle-every", "10", "--throttle-per-action"],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .rotate_path_json(dir.path(), PATH)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .args(["--concurrency", "64", "-o", "keys.json"])
        .output()
        .unwrap();
    let stats = proxy.stats();
    println!("throttling: {stats}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rotated"], users.len());
    // Every action of a rotation was throttled: 30 users make 30 first attempts of each.
    for action in ["ListAccessKeys", "CreateAccessKey", "GetCallerIdentity"] {
        assert!(
            stats["throttled_by_action"][action].as_u64() >= Some(3),
            "{action} was not throttled: {stats}"
        );
    }
    let throttled = stats["throttled_every"].as_u64().unwrap();
    // credrot's own count: every throttled request was sent again, once, none surfaced.
    assert_eq!(summary["aws_calls"]["retries"], throttled, "{summary}");
    assert_eq!(summary["failed"], 0);
}
