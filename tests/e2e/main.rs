//! End-to-end tests: the built credrot binary against a real moto server with IAM
//! authentication on. One test binary, as ripgrep does, so the harness is compiled once.

mod harness;

mod config_errors;
mod rotate_path;
mod taskfile;
mod update;
