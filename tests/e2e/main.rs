//! End-to-end tests: the built credrot binary against a real moto server with IAM
//! authentication on. One test binary, as ripgrep does, so the harness is compiled once.

mod harness;

mod audit;
mod concurrency;
mod config_errors;
#[cfg(feature = "failpoints")]
mod crash;
mod rotate_path;
mod schedule;
mod staged;
mod update;
