//! The container image definition, checked without a Docker daemon (none runs here): its
//! stages, that the build is the locked release build, that the final image runs credrot as
//! a non-root user through an exec-form entrypoint, and that `.dockerignore` keeps keys and
//! build output out of the build context (a context holding `keys.json` would put live keys
//! into an image layer).

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        current.push_str(line.trim_end_matches('\\').trim_end());
        current.push(' ');
        if !line.ends_with('\\') {
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
        .into_iter()
        .map(|l| {
            let (word, rest) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (word.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect()
}

#[test]
fn the_image_is_a_locked_release_build_run_by_a_non_root_user() {
    let steps = instructions();
    let stages: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (word, _))| word == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a final stage: {steps:?}"
    );
    let (build, last) = (&steps[stages[0]..stages[1]], &steps[stages[1]..]);
    // The build stage names itself and makes the release binary from Cargo.lock as it is.
    assert!(build[0].1.ends_with(" AS build"), "{:?}", build[0]);
    assert!(
        build
            .iter()
            .any(|(w, a)| w == "RUN" && a.contains("cargo build --release --locked")),
        "{build:?}"
    );
    // Every base image is pinned to a tag, never `latest` or untagged.
    for (_, from) in steps.iter().filter(|(w, _)| w == "FROM") {
        let image = from.split_whitespace().next().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "unpinned base image {image}"
        );
    }
    // The final stage only copies the binary from the build stage.
    let copies: Vec<&String> = last
        .iter()
        .filter(|(w, _)| w == "COPY")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(copies.len(), 1, "{last:?}");
    assert!(copies[0].starts_with("--from=build "), "{copies:?}");
    assert!(
        !last.iter().any(|(w, _)| w == "RUN"),
        "no RUN in the final image: {last:?}"
    );
    // Non-root, and the user is set before the entrypoint runs.
    let user = last
        .iter()
        .rev()
        .find(|(w, _)| w == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the final stage sets a USER");
    assert!(!matches!(user, "root" | "0" | "0:0"), "runs as {user}");
    // Exec form: credrot is PID 1 and gets the signals (a shell form would wrap it in sh).
    let entrypoint = last
        .iter()
        .find(|(w, _)| w == "ENTRYPOINT")
        .map(|(_, a)| a.clone())
        .expect("an ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(&entrypoint)
        .unwrap_or_else(|_| panic!("ENTRYPOINT is not in exec (JSON) form: {entrypoint}"));
    assert_eq!(argv, ["/usr/local/bin/credrot"]);
}

#[test]
fn the_build_context_leaves_keys_and_build_output_out() {
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in [
        "target/",
        ".venv/",
        "secrets/",
        "keys.json",
        "keys.*.json",
        "sandbox-work/",
    ] {
        assert!(
            rules.contains(&needed),
            ".dockerignore lacks {needed}: {rules:?}"
        );
    }
    assert!(
        !rules.iter().any(|r| r.starts_with('!')),
        "an exception could bring a key back: {rules:?}"
    );
}
