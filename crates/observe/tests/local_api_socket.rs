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

/// Names created in, and moved into, a directory while `f` runs (inotify): (name, is a dir).
fn watch_directory(dir: &std::path::Path, f: impl FnOnce()) -> (Vec<(String, bool)>, Vec<String>) {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
    // SAFETY: `path` is a valid NUL-terminated string.
    let wd =
        unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_CREATE | libc::IN_MOVED_TO) };
    assert!(wd >= 0, "inotify_add_watch: {}", std::io::Error::last_os_error());
    f();
    let mut buffer = vec![0u8; 64 * 1024];
    // SAFETY: the buffer is writable for its length.
    let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    let n = usize::try_from(n).unwrap_or(0);
    let (mut created, mut moved) = (Vec::new(), Vec::new());
    let mut at = 0;
    // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
    while at + 16 <= n {
        let word = |i: usize| u32::from_ne_bytes(buffer[at + i..at + i + 4].try_into().unwrap());
        let (mask, len) = (word(4), word(12) as usize);
        let name = &buffer[at + 16..at + 16 + len];
        let name = String::from_utf8_lossy(name).trim_end_matches('\0').to_owned();
        if mask & libc::IN_CREATE != 0 {
            created.push((name, mask & libc::IN_ISDIR != 0));
        } else if mask & libc::IN_MOVED_TO != 0 {
            moved.push(name);
        }
        at += 16 + len;
    }
    (created, moved)
}

#[tokio::test]
async fn the_socket_never_exists_where_others_could_reach_it_before_it_is_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let mut server = None;
    let (created, moved) = watch_directory(dir.path(), || {
        server = Some(switchyard_observe::server::serve_unix(&path, router).unwrap());
    });
    // Nothing but a directory (0700, made before the socket) is created in the socket's
    // directory: a socket bound there would carry the umask's mode until the chmod.
    assert!(created.iter().all(|(_, is_dir)| *is_dir), "created in the directory: {created:?}");
    assert_eq!(moved, ["agent.sock"], "the socket arrives by rename");
    drop(server);
}
