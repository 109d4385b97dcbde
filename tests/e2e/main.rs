//! End-to-end tests: the built credrot binary against a real moto server with IAM
//! authentication on. One test binary, as ripgrep does, so the harness is compiled once.

mod harness;
mod home;
mod proxy;

mod config_errors;
mod profile;
mod rotate_path;
mod rotate_profile;
mod session_exec;
mod update;
