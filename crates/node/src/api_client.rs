//! A client of the agent's local API (unix socket): what the inspection commands compare the
//! kernel with when no manifest directory is given — the agent's own desired state, whatever
//! its source (manifests or the API server) — and what `switchyard bgp` shows.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_model::DesiredState;
use switchyard_observe::bgp::BgpReport;

/// The agent's default `--api-socket`.
pub const DEFAULT_API_SOCKET: &str = "/run/switchyard/agent.sock";

/// How long a local agent may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A question to the local agent that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// Nothing listens on the socket.
    #[error("asking the agent at {} for {path}: is an agent running with this --api-socket?", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The path asked for.
        path: &'static str,
        /// The connection error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("asking the agent at {} for {path}", socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The path asked for.
        path: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not the HTTP the agent serves.
    #[error("asking the agent at {} for {path}: {problem}", socket.display())]
    Answer {
        /// The socket.
        socket: PathBuf,
        /// The path asked for.
        path: &'static str,
        /// What is wrong with the answer (a status other than 200, no header, chunked).
        problem: String,
    },
    /// The body is not the document asked for.
    #[error("reading {path} from the agent at {}", socket.display())]
    Decode {
        /// The socket.
        socket: PathBuf,
        /// The path asked for.
        path: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// `GET /desired` from the agent serving `socket`.
pub fn desired(socket: &Path) -> Result<DesiredState, ApiClientError> {
    get_json(socket, "/desired")
}

/// `GET /bgp`: the agent's BGP sessions and, per peer, every address announced or not and why.
pub fn bgp(socket: &Path) -> Result<BgpReport, ApiClientError> {
    get_json(socket, "/bgp")
}

fn get_json<T: serde::de::DeserializeOwned>(
    socket: &Path,
    path: &'static str,
) -> Result<T, ApiClientError> {
    let body = get(socket, path)?;
    serde_json::from_slice(&body).map_err(|source| ApiClientError::Decode {
        socket: socket.to_owned(),
        path,
        source,
    })
}

/// One HTTP/1.1 GET over the unix socket; the body of a 200 answer.
fn get(socket: &Path, path: &'static str) -> Result<Vec<u8>, ApiClientError> {
    let io = |source| ApiClientError::Io { socket: socket.to_owned(), path, source };
    let answer_err =
        |problem: String| ApiClientError::Answer { socket: socket.to_owned(), path, problem };
    let mut stream = UnixStream::connect(socket).map_err(|source| ApiClientError::Connect {
        socket: socket.to_owned(),
        path,
        source,
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io)?;
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(answer_err("the answer has no HTTP header".into()));
    };
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(answer_err(status.to_owned()));
    }
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked")) {
        return Err(answer_err("chunked answers are not supported".into()));
    }
    Ok(answer[split + 4..].to_vec())
}
