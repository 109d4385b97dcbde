//! Raising --concurrency against a rate-limited endpoint slows credrot down instead of
//! failing it: the SDK's adaptive retry backs off when the endpoint throttles.

use crate::harness::{FaultProxy, Moto};

const PATH: &str = "/Throttled/";

#[test]
fn high_concurrency_against_a_rate_limit_still_rotates_everyone() {
    let moto = Moto::start();
    let users: Vec<String> = (0..30).map(|i| format!("rl-{i:02}")).collect();
    for user in &users {
        moto.create_user(user, PATH);
    }
    // Throttle above 40 requests/s; 64 users at once would send far more.
    let proxy = FaultProxy::start(&moto.endpoint, 0.0, &["--max-rps", "40"]);
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
    let throttled = stats["rate_limited"].as_u64().unwrap();
    assert!(throttled > 0, "the proxy never throttled: {stats}");
    // credrot's own count: every throttled request was sent again, none surfaced.
    assert_eq!(summary["aws_calls"]["retries"], throttled, "{summary}");
    assert_eq!(summary["failed"], 0);
}
