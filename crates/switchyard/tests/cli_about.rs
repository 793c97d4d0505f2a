//! `--version`, `completion` and `man`: what the binary says about itself (no root).

#![allow(clippy::unwrap_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn run(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn version_names_the_release_the_git_revision_and_the_bpf_build_id() {
    let version = run(&["--version"]);
    let want = format!(
        "switchyard {} (git {}, bpf {})\n",
        env!("CARGO_PKG_VERSION"),
        env!("SWITCHYARD_GIT_REVISION"),
        switchyard_bpf::BUILD_ID
    );
    assert_eq!(version, want);
    assert_eq!(switchyard_bpf::BUILD_ID.len(), 16);
    assert!(switchyard_bpf::BUILD_ID.chars().all(|c| c.is_ascii_hexdigit()));
    // Built from this checkout, the revision is HEAD's (unless git is missing here too).
    if let Ok(head) = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output()
        && head.status.success()
        && std::env::var("SWITCHYARD_GIT_REVISION").is_err()
    {
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(env!("SWITCHYARD_GIT_REVISION"), head.trim());
    }
    let doctor = run(&["doctor", "--version"]);
    assert_eq!(doctor, want.replacen("switchyard", "switchyard-doctor", 1), "subcommands too");
}

#[test]
fn bash_completion_parses_and_completes_subcommands() {
    let script = run(&["completion", "bash"]);
    assert!(script.contains("doctor") && script.contains("--bpf-dir"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "bash -n: {check:?}");
    // Complete `switchyard doc<TAB>` with the script loaded.
    let complete = format!(
        "source {}; COMP_WORDS=(switchyard doc); COMP_CWORD=1; COMP_LINE='switchyard doc'; \
         COMP_POINT=${{#COMP_LINE}}; _switchyard switchyard doc switchyard; echo \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").arg("-c").arg(complete).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "doctor", "{out:?}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    for (shell, marker) in [("zsh", "#compdef switchyard"), ("fish", "complete -c switchyard")] {
        let script = run(&["completion", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        for subcommand in ["agent", "doctor", "completion", "man", "explain"] {
            assert!(script.contains(subcommand), "{shell} completes {subcommand}");
        }
    }
}

#[test]
fn man_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    run(&["man", out.to_str().unwrap()]);
    for page in ["switchyard.1", "switchyard-doctor.1", "switchyard-agent.1", "switchyard-lab.1"] {
        let text =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is roff: {text}");
    }
    let doctor = std::fs::read_to_string(out.join("switchyard-doctor.1")).unwrap();
    assert!(doctor.contains("bpf\\-dir"), "options are documented: {doctor}");
    // man(1) renders it.
    let rendered = Command::new("man")
        .arg("-l")
        .arg(out.join("switchyard-doctor.1"))
        .env("MANPAGER", "cat")
        .output();
    if let Ok(rendered) = rendered {
        assert!(rendered.status.success(), "{rendered:?}");
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("doctor"));
    }
}
