//! End-to-end tests: the built credrot binary against a real moto server with IAM
//! authentication on. One test binary, as ripgrep does, so the harness is compiled once.

mod harness;

mod bad_input;
mod concurrency;
mod config_errors;
#[cfg(feature = "failpoints")]
mod crash;
mod faults;
mod rotate_path;
mod schedule;
mod staged;
mod status;
mod stores_aws;
mod stores_onepassword;
mod taskfile;
mod terraform;
mod throttling;
mod update;
