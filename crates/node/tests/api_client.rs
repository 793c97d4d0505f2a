//! The local API's client against a unix socket server of the test's own: answers as hyper
//! (and any HTTP/1.1 server) may send them. The hand-written client refused chunked answers
//! (issue 21).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use switchyard_model::DesiredState;
use switchyard_node::api_client::{self, ApiClientError};

/// Serves one connection on a fresh socket: reads the request head, writes `answer(body)`.
fn serve_once(
    answer: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let body = serde_json::to_vec(&DesiredState::default()).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        reader.get_mut().write_all(&answer(&body)).unwrap();
    });
    (dir, socket)
}

#[test]
fn a_chunked_answer_is_read() {
    let (_dir, socket) = serve_once(|body| {
        let (first, second) = body.split_at(body.len() / 2);
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n"
            .to_vec();
        for chunk in [first, second] {
            out.extend(format!("{:x}\r\n", chunk.len()).bytes());
            out.extend(chunk);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
        out
    });
    assert_eq!(api_client::desired(&socket).unwrap(), DesiredState::default());
}

#[test]
fn a_content_length_answer_is_read() {
    let (_dir, socket) = serve_once(|body| {
        let mut out =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend(body);
        out
    });
    assert_eq!(api_client::desired(&socket).unwrap(), DesiredState::default());
}

#[test]
fn a_status_other_than_200_is_an_error_naming_it() {
    let (_dir, socket) =
        serve_once(|_| b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec());
    let err = api_client::desired(&socket).unwrap_err();
    assert!(matches!(err, ApiClientError::Answer { .. }), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[test]
fn no_agent_is_a_connect_error_asking_about_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let err = api_client::desired(&dir.path().join("none.sock")).unwrap_err();
    assert!(matches!(err, ApiClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("is an agent running with this --api-socket?"), "{err}");
}
