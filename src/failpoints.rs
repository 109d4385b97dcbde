//! Crash-test support, compiled only with the `failpoints` feature: a fail point configured
//! with `return` (e.g. `FAILPOINTS=after-create=return`) kills the process with SIGKILL right
//! there, as a power cut or an OOM kill would — no destructor, no flush.

/// Kill this process with SIGKILL.
pub fn crash() -> ! {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    // SIGKILL is delivered asynchronously; never go on running.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
