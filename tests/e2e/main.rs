//! End-to-end tests: the built credrot binary against a real moto server with IAM
//! authentication on. One test binary, as ripgrep does, so the harness is compiled once.

mod harness;
mod home;
mod invariants;
mod proxy;

mod audit;
mod bad_input;
mod bench;
mod break_glass;
mod chaos;
mod completions;
mod concurrency;
mod config_errors;
#[cfg(feature = "failpoints")]
mod crash;
mod faults;
mod fs_safety;
mod generate;
mod monitoring;
mod output_pipe;
mod planner;
mod policies;
mod profile;
mod rotate_path;
mod rotate_profile;
mod schedule;
mod session_exec;
mod staged;
mod status;
mod stores_aws;
mod stores_onepassword;
mod taskfile;
mod taskfile_rotate;
mod terraform;
mod throttling;
mod update;
