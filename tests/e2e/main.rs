//! End-to-end tests: the built credrot binary against a real moto server with IAM
//! authentication on. One test binary, as ripgrep does, so the harness is compiled once.

mod fake_cloud;
mod fake_http;
mod harness;
mod home;
mod invariants;
mod proxy;

mod accounts;
mod audit;
mod bad_input;
mod bench;
mod break_glass;
mod chaos;
mod completions;
mod concurrency;
mod config_errors;
mod container;
#[cfg(feature = "failpoints")]
mod crash;
mod docs;
mod examples;
mod faults;
mod fs_safety;
mod generate;
mod git_ignore;
mod hooks;
mod identity;
mod lambda;
mod messages;
mod monitoring;
mod output_pipe;
mod planner;
mod policies;
mod profile;
mod progress;
mod rotate_path;
mod rotate_profile;
mod schedule;
mod session_exec;
mod snapshots;
mod staged;
mod status;
mod stores_aws;
mod stores_azure;
mod stores_gcp;
mod stores_github;
pub mod stores_kubernetes;
mod stores_onepassword;
mod stores_vault;
mod taskfile;
mod taskfile_rotate;
mod terraform;
mod terraform_apply;
mod throttling;
mod update;
mod verbosity;
