//! Packaging helper, not installed: writes the man pages (tandemd(8), tandemctl(1)) and the shell
//! completions of both binaries from their clap definitions, so they never drift from `--help`.
//!
//! `tandem-gen OUTDIR` writes `OUTDIR/man/{tandemd.8,tandemctl.1,tandemctl-SUBCOMMAND.1...}` and
//! `OUTDIR/completions/{bash,zsh,fish}/...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

// The binaries' own argument definitions, compiled here as modules (their `main`s unused).
#[allow(dead_code, unused_imports)]
#[path = "tandemd.rs"]
mod tandemd;

#[allow(dead_code, unused_imports)]
#[path = "tandemctl.rs"]
mod tandemctl;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: tandem-gen OUTDIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-gen: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// The command's page and one per subcommand (`tandemctl-stats.1`), as clap_mangen's
/// generate_to does, with our section and manual name.
fn man_pages(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        man_pages(sub, section, dir)?;
    }
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("tandem")
        .generate_to(dir)?;
    Ok(())
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for (cmd, section) in [
        (tandemd::Args::command(), "8"),
        (tandemctl::Cli::command(), "1"),
    ] {
        let name = cmd.get_name().to_string();
        let mut built = cmd.clone().disable_help_subcommand(true);
        built.build();
        man_pages(built, section, &man)?;
        for (shell, dir, file) in [
            (clap_complete::Shell::Bash, "bash", name.clone()),
            (clap_complete::Shell::Zsh, "zsh", format!("_{name}")),
            (clap_complete::Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let d = out.join("completions").join(dir);
            std::fs::create_dir_all(&d)?;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut buf);
            std::fs::write(d.join(file), buf)?;
        }
    }
    Ok(())
}
