//! Records the git revision the binary is built from, for `switchyard --version`.
//!
//! `SWITCHYARD_GIT_REVISION` wins when set (packaging from a tarball); otherwise `git rev-parse`
//! answers; without git or outside a checkout the revision is `unknown` and the build goes on.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_GIT_REVISION");
    let revision = match std::env::var("SWITCHYARD_GIT_REVISION") {
        Ok(revision) if !revision.trim().is_empty() => revision.trim().to_owned(),
        _ => git_revision().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=SWITCHYARD_GIT_REVISION={revision}");
}

/// The abbreviated commit of HEAD, and rerun-if-changed lines for the files that move with it.
fn git_revision() -> Option<String> {
    // Relative answers are relative to the crate directory, where git ran.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git_dir = crate_dir.join(git(&["rev-parse", "--git-dir"])?);
    let common_dir = crate_dir.join(git(&["rev-parse", "--git-common-dir"])?);
    watch(&git_dir.join("HEAD"));
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&common_dir.join(reference));
    }
    watch(&common_dir.join("packed-refs"));
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Standard output of `git ARGS` in this crate's directory, if git ran and succeeded.
fn git(args: &[&str]) -> Option<String> {
    let output =
        Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
