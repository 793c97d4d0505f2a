//! TCP echo, UDP echo and HTTP servers that answer with their name.
//!
//! Servers listen on `[::]:port`, which on Linux also accepts IPv4 (bindv6only is 0 in lab
//! namespaces). Each runs on its own threads until its handle is dropped. UDP replies leave from
//! the address the request was sent to.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::Reply;

/// Which built-in server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    TcpEcho,
    UdpEcho,
    Http,
}

/// A running server; dropping it stops the server.
#[derive(Debug)]
pub struct ServerHandle {
    kind: ServerKind,
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    fd: i32,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Blocks until the server stops (used by the CLI, which runs until killed).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown wakes a thread blocked in accept() or recv_from() on this socket.
        // SAFETY: the descriptor belongs to the server socket, which the server thread still owns.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn reply_line(name: &str, peer: SocketAddr, echo: &str) -> String {
    let reply = Reply {
        backend: name.to_string(),
        peer: canonical(peer).to_string(),
        echo: echo.to_string(),
    };
    // Serializing a struct of strings cannot fail.
    serde_json::to_string(&reply).unwrap_or_default()
}

/// IPv4 peers of a dual-stack socket appear as `::ffff:a.b.c.d`; report them as IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)
}

/// Starts a server of `kind` named `name` on `port` in the calling thread's namespace.
pub fn start(kind: ServerKind, name: &str, port: u16) -> io::Result<ServerHandle> {
    match kind {
        ServerKind::TcpEcho => start_tcp(kind, name, port, serve_echo_connection),
        ServerKind::Http => start_tcp(kind, name, port, serve_http_connection),
        ServerKind::UdpEcho => start_udp(name, port),
    }
}

fn start_tcp(
    kind: ServerKind,
    name: &str,
    port: u16,
    serve: fn(TcpStream, &str) -> io::Result<()>,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(any(port))?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let fd = listener.as_raw_fd();
    let name = name.to_string();
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &name);
            });
        }
    });
    Ok(ServerHandle { kind, local, stop, fd, thread: Some(thread) })
}

/// Answers every line with a [`Reply`] line until the client closes.
fn serve_echo_connection(stream: TcpStream, name: &str) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        writer.write_all(format!("{}\n", reply_line(name, peer, &line)).as_bytes())?;
    }
    Ok(())
}

/// Answers one HTTP/1.x request with `200 OK` and a [`Reply`] body, then closes.
fn serve_http_connection(stream: TcpStream, name: &str) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip headers up to the blank line.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = format!("{}\n", reply_line(name, peer, &target));
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Backend: {name}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    stream.write_all(response.as_bytes())?;
    // Let the client read everything before the close.
    stream.shutdown(std::net::Shutdown::Write)?;
    let _ = stream.read(&mut [0u8; 64]);
    Ok(())
}

/// The UDP echo's answer: the reply line for the request's first line, then — when the request
/// has more lines — a newline and the rest of the request byte for byte, so a large datagram
/// comes back as large as it went (fragment tests through NodePorts need both directions).
fn udp_reply(name: &str, peer: SocketAddr, request: &[u8]) -> Vec<u8> {
    let (first, rest) = match request.iter().position(|&b| b == b'\n') {
        Some(at) => (&request[..at], &request[at + 1..]),
        None => (request, &[][..]),
    };
    let line = String::from_utf8_lossy(first).trim_end().to_string();
    let mut reply = reply_line(name, peer, &line).into_bytes();
    if !rest.is_empty() {
        reply.push(b'\n');
        reply.extend_from_slice(rest);
    }
    reply
}

fn start_udp(name: &str, port: u16) -> io::Result<ServerHandle> {
    let socket = UdpSocket::bind(any(port))?;
    super::udp_reply::enable(&socket)?;
    let local = socket.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let fd = socket.as_raw_fd();
    let name = name.to_string();
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stopped.load(Ordering::SeqCst) {
            let Ok(received) = super::udp_reply::recv(&socket, &mut buf) else { continue };
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let peer = SocketAddr::V6(received.peer);
            let reply = udp_reply(&name, peer, &buf[..received.len]);
            let _ = super::udp_reply::send(&socket, &reply, peer, received.destination);
        }
    });
    Ok(ServerHandle { kind: ServerKind::UdpEcho, local, stop, fd, thread: Some(thread) })
}
