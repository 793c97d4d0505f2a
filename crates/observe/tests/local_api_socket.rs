//! The local API socket: mode 0600 at its path (bound elsewhere and renamed into place, so it is
//! never reachable with the umask's mode), no staging file left behind, and it answers.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::os::unix::fs::PermissionsExt as _;

use axum::{Router, routing::get};

#[tokio::test]
async fn the_socket_is_0600_and_nothing_else_is_left_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let server = switchyard_observe::server::serve_unix(&path, router).unwrap();

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["agent.sock"], "staging files left: {names:?}");
    // It answers at its final path.
    assert!(tokio::net::UnixStream::connect(&path).await.is_ok());
    drop(server);
}
