//! What the binary says about itself: `--version`, shell completions and man pages.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `0.1.0 (git 1a2b3c4d5e6f, bpf 0123456789abcdef)`: the release, the commit it was built from
/// (`unknown` without git) and the build id of the embedded BPF objects.
pub(crate) fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{} (git {}, bpf {})",
            env!("CARGO_PKG_VERSION"),
            env!("SWITCHYARD_GIT_REVISION"),
            switchyard_bpf::BUILD_ID
        )
    });
    VERSION.as_str()
}

/// Print a shell completion script.
#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell: bash, zsh or fish (also elvish, powershell). Load it with e.g.
    /// `source <(switchyard completion bash)`, or save it where the shell looks for completions.
    #[arg(value_enum, value_name = "SHELL")]
    shell: Shell,
}

/// Write man pages.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Directory for the pages (created if needed): switchyard.1, switchyard-agent.1, ...
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub(crate) fn completion(args: &CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "switchyard", &mut script);
    std::io::stdout().write_all(&script).context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    clap_mangen::generate_to(super::Cli::command(), &args.dir)
        .with_context(|| format!("writing man pages to {}", args.dir.display()))?;
    println!("man pages written to {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}
