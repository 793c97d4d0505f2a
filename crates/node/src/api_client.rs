//! A client of the agent's local API (unix socket): what the inspection commands compare the
//! kernel with when no manifest directory is given — the agent's own desired state, whatever
//! its source (manifests or the API server) — and what `switchyard bgp` shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use switchyard_error::ErrorChain;

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
        /// What is wrong with the answer (a status other than 200, not HTTP).
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

/// One HTTP/1.1 GET over the unix socket (hyper, on a runtime of its own: the inspection
/// commands are synchronous); the body of a 200 answer, chunked or not.
fn get(socket: &Path, path: &'static str) -> Result<Vec<u8>, ApiClientError> {
    let io = |source| ApiClientError::Io { socket: socket.to_owned(), path, source };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io)?;
    runtime.block_on(async {
        match tokio::time::timeout(TIMEOUT, fetch(socket, path)).await {
            Ok(answer) => answer,
            Err(_) => Err(io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", TIMEOUT.as_secs()),
            ))),
        }
    })
}

async fn fetch(socket: &Path, path: &'static str) -> Result<Vec<u8>, ApiClientError> {
    let answer_err =
        |problem: String| ApiClientError::Answer { socket: socket.to_owned(), path, problem };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ApiClientError::Connect { socket: socket.to_owned(), path, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| answer_err(ErrorChain(&err).to_string()))?;
    // Drives the connection; it ends when the answer is read and the sender dropped.
    let connection = tokio::spawn(connection);
    let request = Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|err| answer_err(err.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| answer_err(ErrorChain(&err).to_string()))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(answer_err(format!("HTTP {status}")));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| answer_err(ErrorChain(&err).to_string()))?
        .to_bytes();
    drop(sender);
    let _ = connection.await;
    Ok(body.to_vec())
}
