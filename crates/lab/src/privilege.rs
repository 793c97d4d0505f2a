//! Privileged tests: run as root, and say so loudly when they could not.
//!
//! A privileged test that silently passes without root is a test that cannot fail. As root (CI is
//! root) these tests always run. Without root they fail, unless `SWITCHYARD_SKIP_PRIVILEGED=1` is
//! set, in which case they print a loud notice and return early.

/// Returns `true` when the calling test may go on with privileged work.
///
/// Without root: panics, or with `SWITCHYARD_SKIP_PRIVILEGED=1` prints a notice to standard error
/// and returns `false` so the test can return.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let skip = std::env::var("SWITCHYARD_SKIP_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(skip, "{test}: needs root (set SWITCHYARD_SKIP_PRIVILEGED=1 to skip privileged tests)");
    eprintln!("!!! SKIPPED {test}: not root, privileged test did NOT run !!!");
    false
}
