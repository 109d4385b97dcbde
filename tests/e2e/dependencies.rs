//! The build compiles one TLS stack and one HTTP client (issue 15): the AWS SDK crates' default
//! features would add rustls 0.21 + hyper 0.14 and aws-lc-sys, the slowest C build in the tree.
//! Cargo.lock is what `cargo build --locked` compiles, so it is checked here.

use std::collections::BTreeMap;
use std::path::Path;

/// Every package of Cargo.lock with the versions locked for it.
fn locked_versions() -> BTreeMap<String, Vec<String>> {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in parsed["package"].as_array().unwrap() {
        versions
            .entry(package["name"].as_str().unwrap().to_string())
            .or_default()
            .push(package["version"].as_str().unwrap().to_string());
    }
    versions
}

#[test]
fn cargo_lock_holds_one_tls_stack_and_one_http_client() {
    let versions = locked_versions();
    for name in ["rustls", "hyper", "hyper-rustls", "tokio-rustls", "ring"] {
        let locked = versions.get(name).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            locked.len(),
            1,
            "{name} is locked at {locked:?}: exactly one version expected"
        );
    }
    assert!(
        versions["rustls"][0].starts_with("0.23."),
        "rustls {:?}",
        versions["rustls"]
    );
    assert!(
        versions["hyper"][0].starts_with("1."),
        "hyper {:?}",
        versions["hyper"]
    );
    for name in ["aws-lc-sys", "aws-lc-rs", "openssl-sys", "native-tls"] {
        assert!(
            !versions.contains_key(name),
            "{name} is in Cargo.lock: a dependency's default features brought a second TLS stack back (`cargo tree -i {name}`)"
        );
    }
}
