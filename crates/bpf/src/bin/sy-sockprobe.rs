//! Test helper for the privileged socket-LB tests: joins a cgroup, enters a fresh network
//! namespace, starts servers on backend addresses and runs client operations against frontends,
//! printing one line per result. It lives in its own process because cgroup membership (which
//! decides whether the cgroup programs run for a socket) is per process.
//!
//! `sy-sockprobe CGROUP_DIR OP...`, where OP is one of
//! - `addr=IP` add IP/32 or IP/128 to `lo` (127.0.0.0/8 and ::1 need nothing) and wait until a
//!   datagram from it to itself comes back; `addr-quiet=IP` the same without sending anything
//!   (waits until the address is no longer tentative), so the namespace shows no source,
//! - `tcp-server=IP:PORT=NAME`, `udp-server=IP:PORT=NAME` answer every client with NAME,
//! - `tcp=IP:PORT` connect, print the peer (getpeername) and the server's NAME,
//! - `udp-connected=IP:PORT` connect, send, receive: print peer, source and NAME,
//! - `udp-sendto=IP:PORT*N[,sleep=MS,mark=FILE,await=FILE,IP:PORT*N...]` one unconnected socket
//!   sending datagrams: source and NAME of each reply; `mark` creates FILE, `await` waits (up to
//!   10 s) until FILE exists, so a test can change maps at an exact point between sends,
//! - `tcp-from=SRC@IP:PORT`, `udp-from=SRC@IP:PORT` the same from a socket bound to address SRC
//!   first (so its source is known at connect()/sendmsg()), one datagram for UDP,
//! - `bench-udp-connect=IP:PORT*N` N times socket()+bind()+connect() on UDP (no packet is
//!   sent, so this is the syscall path plus the cgroup program), print the mean per round,
//! - `as-node=BPF_DIR` make this namespace the node's: write its cookie as `sy_config`'s
//!   `node_netns_cookie` in the maps pinned in BPF_DIR (so its loopback reaches NodePorts),
//! - `sleep=MS`.
//!
//! Output lines: `OP ok peer=ADDR from=ADDR reply=NAME` or `OP err=ERRNO after_us=MICROS`
//! (time since the op started).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Command, ExitCode},
    time::Duration,
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cgroup, ops)) = args.split_first() else {
        eprintln!("usage: sy-sockprobe CGROUP_DIR OP...");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::write(format!("{cgroup}/cgroup.procs"), "0") {
        eprintln!("joining cgroup {cgroup}: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!("unshare(CLONE_NEWNET): {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = ip(&["link", "set", "lo", "up"]) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    for op in ops {
        if let Err(e) = run(op) {
            eprintln!("{op}: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn ip(args: &[&str]) -> Result<(), String> {
    let status = Command::new("ip").args(args).status().map_err(|e| format!("ip {args:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("ip {args:?}: {status}")) }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| format!("bad socket address {text:?}: {e}"))
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Runs one operation; Err only for a malformed op or a broken setup step.
fn run(op: &str) -> Result<(), String> {
    let started = std::time::Instant::now();
    let (verb, arg) = op.split_once('=').ok_or_else(|| format!("bad op {op:?}"))?;
    match verb {
        "addr" | "addr-quiet" => {
            let prefix = if arg.contains(':') { "128" } else { "32" };
            let mut args = vec!["addr", "add"];
            let cidr = format!("{arg}/{prefix}");
            args.push(&cidr);
            args.extend(["dev", "lo"]);
            if arg.contains(':') {
                args.push("nodad");
            }
            ip(&args)?;
            if verb == "addr" { wait_routable(arg) } else { wait_not_tentative(arg) }
        }
        "as-node" => {
            let maps = switchyard_bpf::Maps::open_pinned(std::path::Path::new(arg))
                .map_err(|e| format!("opening the maps in {arg}: {e}"))?;
            let mut config = maps.config().map_err(|e| format!("reading sy_config: {e}"))?;
            config.node_netns_cookie = switchyard_bpf::loader::own_netns_cookie()
                .map_err(|e| format!("SO_NETNS_COOKIE: {e}"))?;
            let mut maps = maps;
            maps.config.set(0, config, 0).map_err(|e| format!("writing sy_config: {e}"))?;
            Ok(())
        }
        "sleep" => {
            let ms: u64 = arg.parse().map_err(|e| format!("bad sleep {arg:?}: {e}"))?;
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        }
        "tcp-server" => {
            let (addr, name) = arg.rsplit_once('=').ok_or_else(|| format!("bad server {arg:?}"))?;
            let listener =
                TcpListener::bind(parse_addr(addr)?).map_err(|e| format!("bind {addr}: {e}"))?;
            let name = name.to_owned();
            std::thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    let _ = stream.write_all(format!("{name}\n").as_bytes());
                }
            });
            Ok(())
        }
        "udp-server" => {
            let (addr, name) = arg.rsplit_once('=').ok_or_else(|| format!("bad server {arg:?}"))?;
            let socket =
                UdpSocket::bind(parse_addr(addr)?).map_err(|e| format!("bind {addr}: {e}"))?;
            let name = name.to_owned();
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(name.as_bytes(), from);
                }
            });
            Ok(())
        }
        "tcp" => {
            let target = parse_addr(arg)?;
            match TcpStream::connect_timeout(&target, TIMEOUT) {
                Err(e) => {
                    println!("{op} err={} after_us={}", errno(&e), started.elapsed().as_micros())
                }
                Ok(mut stream) => {
                    let peer = stream
                        .peer_addr()
                        .map_or_else(|e| format!("err{}", errno(&e)), |p| p.to_string());
                    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
                    let mut reply = String::new();
                    let _ = stream.read_to_string(&mut reply);
                    println!("{op} ok peer={peer} from={peer} reply={}", reply.trim());
                }
            }
            Ok(())
        }
        "udp-connected" => {
            let target = parse_addr(arg)?;
            let socket = udp_socket(&target)?;
            if let Err(e) = socket.connect(target) {
                println!("{op} err={} after_us={}", errno(&e), started.elapsed().as_micros());
                return Ok(());
            }
            let peer =
                socket.peer_addr().map_or_else(|e| format!("err{}", errno(&e)), |p| p.to_string());
            if let Err(e) = socket.send(b"hello") {
                println!("{op} err={} after_us={}", errno(&e), started.elapsed().as_micros());
                return Ok(());
            }
            let mut buf = [0u8; 512];
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    println!(
                        "{op} ok peer={peer} from={from} reply={}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                }
                Err(e) => {
                    println!("{op} err={} after_us={}", errno(&e), started.elapsed().as_micros())
                }
            }
            Ok(())
        }
        "udp-sendto" => {
            // One socket for every step: `IP:PORT*N` sends, `sleep=MS` pauses.
            let mut socket = None;
            for step in arg.split(',') {
                if let Some(ms) = step.strip_prefix("sleep=") {
                    let ms: u64 = ms.parse().map_err(|e| format!("bad sleep {ms:?}: {e}"))?;
                    std::thread::sleep(Duration::from_millis(ms));
                    continue;
                }
                if let Some(path) = step.strip_prefix("mark=") {
                    std::fs::write(path, b"").map_err(|e| format!("mark {path}: {e}"))?;
                    continue;
                }
                if let Some(path) = step.strip_prefix("await=") {
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    while !std::path::Path::new(path).exists() {
                        if std::time::Instant::now() > deadline {
                            return Err(format!("await {path}: not created within 10 s"));
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    continue;
                }
                let (addr, count) = step.split_once('*').unwrap_or((step, "1"));
                let count: usize =
                    count.parse().map_err(|e| format!("bad count {count:?}: {e}"))?;
                let target = parse_addr(addr)?;
                if socket.is_none() {
                    socket = Some(udp_socket(&target)?);
                }
                let Some(socket) = socket.as_ref() else { continue };
                for _ in 0..count {
                    let sent = started.elapsed();
                    if let Err(e) = socket.send_to(b"hello", target) {
                        println!(
                            "{op} err={} after_us={}",
                            errno(&e),
                            (started.elapsed() - sent).as_micros()
                        );
                        continue;
                    }
                    let mut buf = [0u8; 512];
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            println!(
                                "{op} ok peer=- from={from} reply={}",
                                String::from_utf8_lossy(&buf[..n])
                            );
                        }
                        Err(e) => {
                            println!(
                                "{op} err={} after_us={}",
                                errno(&e),
                                (started.elapsed() - sent).as_micros()
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        "tcp-from" | "udp-from" => {
            let (source, target) =
                arg.split_once('@').ok_or_else(|| format!("bad {verb} {arg:?}: SRC@IP:PORT"))?;
            let source: std::net::IpAddr =
                source.parse().map_err(|e| format!("bad source {source:?}: {e}"))?;
            let (bind, target) = (SocketAddr::new(source, 0), parse_addr(target)?);
            let result =
                if verb == "tcp-from" { bound_tcp(bind, target) } else { bound_udp(bind, target) };
            match result {
                Ok((peer, from, reply)) => {
                    println!("{op} ok peer={peer} from={from} reply={reply}")
                }
                Err(e) => {
                    println!("{op} err={} after_us={}", errno(&e), started.elapsed().as_micros())
                }
            }
            Ok(())
        }
        "bench-udp-connect" => {
            let (addr, count) = arg.split_once('*').unwrap_or((arg, "1000"));
            let count: u32 = count.parse().map_err(|e| format!("bad count {count:?}: {e}"))?;
            let target = parse_addr(addr)?;
            let bind: SocketAddr = "0.0.0.0:0".parse().map_err(|e| format!("{e}"))?;
            let started = std::time::Instant::now();
            let mut failures = 0u32;
            for _ in 0..count {
                let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
                if socket.connect(target).is_err() {
                    failures += 1;
                }
            }
            let ns = started.elapsed().as_nanos() / u128::from(count.max(1));
            println!("{op} ok ns_per_connect={ns} failures={failures}");
            Ok(())
        }
        _ => Err(format!("unknown op {verb:?}")),
    }
}

/// IPv6 addresses become usable a moment after `ip addr add` (the kernel adds the local route
/// in a work item, even with nodad): wait until a datagram sent to the address arrives there.
/// Waits until `ip addr` lists `ip` on `lo` and not as tentative (no packet sent).
fn wait_not_tentative(ip: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["-o", "addr", "show", "dev", "lo", "to", ip])
            .output()
            .map_err(|e| format!("ip addr show: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && !text.trim().is_empty() && !text.contains("tentative") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("{ip} still tentative or absent after {TIMEOUT:?}"))
}

fn wait_routable(ip: &str) -> Result<(), String> {
    let bind = parse_addr(&format!("[{ip}]:0")).or_else(|_| parse_addr(&format!("{ip}:0")))?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut last_error = String::new();
    while std::time::Instant::now() < deadline {
        let attempt = UdpSocket::bind(bind).and_then(|socket| {
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            socket.send_to(b"ping", socket.local_addr()?)?;
            let mut buf = [0u8; 8];
            socket.recv_from(&mut buf).map(|_| ())
        });
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("{ip} not usable after {TIMEOUT:?}: {last_error}"))
}

/// TCP from a socket bound to `bind` before connect(): peer, peer, the server's NAME.
fn bound_tcp(bind: SocketAddr, target: SocketAddr) -> std::io::Result<(String, String, String)> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};
    let family = if bind.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let timeout = nix::sys::time::TimeVal::new(TIMEOUT.as_secs() as i64, 0);
    socket::setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrStorage::from(bind))?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrStorage::from(target))?;
    let mut stream = TcpStream::from(fd);
    let peer = stream.peer_addr()?.to_string();
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    Ok((peer.clone(), peer, reply.trim().to_owned()))
}

/// One datagram from an unconnected socket bound to `bind`: -, the reply's source, NAME.
fn bound_udp(bind: SocketAddr, target: SocketAddr) -> std::io::Result<(String, String, String)> {
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.send_to(b"hello", target)?;
    let mut buf = [0u8; 512];
    let (n, from) = socket.recv_from(&mut buf)?;
    Ok(("-".to_owned(), from.to_string(), String::from_utf8_lossy(&buf[..n]).into_owned()))
}

fn udp_socket(target: &SocketAddr) -> Result<UdpSocket, String> {
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|e| format!("{e}"))?;
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    socket.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(socket)
}
