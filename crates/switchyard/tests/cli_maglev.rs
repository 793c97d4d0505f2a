//! `switchyard maglev` end to end: the real binary on a backend list file.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A backend list in the temp directory, removed when dropped.
struct ListFile(PathBuf);

impl ListFile {
    fn new(test_name: &str, contents: &str) -> ListFile {
        let path = std::env::temp_dir()
            .join(format!("switchyard-cli-maglev-{test_name}-{}.txt", std::process::id()));
        std::fs::write(&path, contents).expect("temp file is writable");
        ListFile(path)
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn switchyard_maglev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("maglev")
        .args(args)
        .env_remove("SWITCHYARD_MAGLEV_SEED")
        .output()
        .expect("binary runs")
}

#[test]
fn prints_slots_per_backend_and_the_moved_fraction() {
    let list = ListFile::new("distribution", "10.0.0.1:8080\n10.0.0.2:8080 2\n10.0.0.3:8080 0\n");
    let path = list.0.to_str().expect("utf-8 temp path");
    let output =
        switchyard_maglev(&["--backends", path, "--size", "16381", "--remove", "10.0.0.1:8080"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let slots_of = |backend: &str| -> u32 {
        let row = stdout.lines().find(|l| l.starts_with(backend)).expect("a row per backend");
        row.split_whitespace().nth(2).and_then(|s| s.parse().ok()).expect("slot count")
    };
    let (a, b, drained) =
        (slots_of("10.0.0.1:8080"), slots_of("10.0.0.2:8080"), slots_of("10.0.0.3:8080"));
    assert_eq!(a + b, 16381);
    assert_eq!(drained, 0);
    assert!(b.abs_diff(2 * a) <= 2, "weight 2 should get twice the slots: {a} vs {b}");
    // Removing one of two active backends moves exactly its slots: the other takes them all.
    assert!(
        stdout.contains(&format!("removing 10.0.0.1:8080: {a} of 16381 slots moved")),
        "{stdout}"
    );
}

#[test]
fn refuses_bad_input_naming_the_file_and_reason() {
    let list = ListFile::new("bad-input", "10.0.0.1:8080\n10.0.0.2:8080 heavy\n");
    let path = list.0.to_str().expect("utf-8 temp path");
    let cases: [(&[&str], String); 3] = [
        (&["--backends", path, "--size", "251"], format!("backend list {path}: line 2: weight")),
        (&["--backends", path, "--size", "1000"], "is not a prime".to_owned()),
        (
            &["--backends", "/nonexistent/switchyard/list", "--size", "251"],
            "cannot read backend list /nonexistent/switchyard/list".to_owned(),
        ),
    ];
    for (args, expected) in cases {
        let output = switchyard_maglev(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
}
