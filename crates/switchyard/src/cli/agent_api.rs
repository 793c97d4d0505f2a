//! A client of the agent's local API (unix socket): what the inspection commands compare the
//! kernel with when no manifest directory is given — the agent's own desired state, whatever
//! its source (manifests or the API server).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_model::DesiredState;

/// The agent's default `--api-socket`.
pub(crate) const DEFAULT_API_SOCKET: &str = "/run/switchyard/agent.sock";

/// How long a local agent may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /desired` from the agent serving `socket`.
pub(crate) fn desired(socket: &Path) -> anyhow::Result<DesiredState> {
    let body = get(socket, "/desired")?;
    serde_json::from_slice(&body)
        .with_context(|| format!("reading the desired state from {}", socket.display()))
}

/// One HTTP/1.1 GET over the unix socket; the body of a 200 answer.
fn get(socket: &Path, path: &str) -> anyhow::Result<Vec<u8>> {
    let context = || format!("asking the agent at {} for {path}", socket.display());
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("{}: is an agent running with this --api-socket?", context()))?;
    stream.set_read_timeout(Some(TIMEOUT)).with_context(context)?;
    stream.set_write_timeout(Some(TIMEOUT)).with_context(context)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .with_context(context)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).with_context(context)?;
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("{}: the answer has no HTTP header", context());
    };
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        bail!("{}: {status}", context());
    }
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked")) {
        bail!("{}: chunked answers are not supported", context());
    }
    Ok(answer[split + 4..].to_vec())
}
