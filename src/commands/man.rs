//! `credrot man DIR`: one man page per command (credrot.1, credrot-update.1,
//! credrot-profile-encrypt.1, ...), each with its own options, written into DIR.

use crate::cli::Cli;
use crate::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write every page into `dir` (created if missing); print the paths written.
pub(super) fn run(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let mut command = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Gives subcommands their page names (credrot-update) as their display names.
    command.build();
    let mut written = Vec::new();
    write_pages(&command, dir, &mut written)?;
    let mut out = std::io::stdout().lock();
    for path in written {
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

fn write_pages(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    // clap_mangen fills (reflows) the after-help text; the examples are columns, so they
    // are written as a no-fill section instead.
    let extra = command.get_after_help().map(|t| t.to_string());
    let man = clap_mangen::Man::new(command.clone().after_help(None::<&str>));
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    if let Some(text) = extra {
        page.extend_from_slice(no_fill_section("EXAMPLES", &text).as_bytes());
    }
    std::fs::write(&path, page)?;
    written.push(path);
    Ok(())
}

/// A roff section printed line for line as written.
fn no_fill_section(title: &str, text: &str) -> String {
    let mut roff = format!(".SH {title}\n.nf\n");
    for line in text.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with(['.', '\'']) {
            roff.push_str("\\&");
        }
        roff.push_str(&line);
        roff.push('\n');
    }
    roff.push_str(".fi\n");
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_a_page_with_its_options_and_verbatim_examples() {
        let dir = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        let mut command = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
        command.build();
        write_pages(&command, dir.path(), &mut written).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "credrot.1",
            "credrot-update.1",
            "credrot-rotate.1",
            "credrot-profile-encrypt.1",
            "credrot-audit-verify.1",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        let main = std::fs::read_to_string(dir.path().join("credrot.1")).unwrap();
        // Every page the main page lists exists.
        for listed in main.split("credrot-").skip(1) {
            let name = listed.split('(').next().unwrap();
            assert!(
                names.contains(&format!("credrot-{name}.1")),
                "credrot-{name}(1) is listed but not generated"
            );
        }
        assert!(main.contains(".nf\nExamples:\n"), "{main}");
        let update = std::fs::read_to_string(dir.path().join("credrot-update.1")).unwrap();
        assert!(
            update.contains("dry\\-run") && update.contains("verify\\-timeout"),
            "{update}"
        );
        assert_eq!(
            no_fill_section("X", ".a\\b"),
            ".SH X\n.nf\n\\&.a\\eb\n.fi\n"
        );
    }
}
