//! The forwarding benchmark's three namespaces: generator → forwarder → sink.
//!
//! ```text
//!  sender ns             forwarder ns ("node")                          sink ns
//!  [g] 10.250.0.2 ─veth─ [i] 10.250.0.1 (node IP) │ [o] 10.244.1.1 ─veth─ [s] (no address)
//! ```
//!
//! Where the work runs. A veth hands a frame to its peer's NAPI instance (a ring and a poll
//! function) when the peer has GRO on (or an XDP program) and the frame is eligible (sent with
//! `ndo_xdp_xmit`, or sent by a device with TSO off); otherwise the receive path runs on the
//! sending CPU. `i` and `s` have GRO on and threaded NAPI: each has a kernel thread of its own
//! (`napi/<dev>-<id>`) that does its receive work, pinned by us. `o` has TSO off so the
//! forwarded frames go to `s`'s thread, and `g` has TSO off so a packet socket's frames (the
//! generator's fallback where live frames are refused) go to `i`'s thread as well. So:
//! - the generator thread (live frames, `ndo_xdp_xmit` into `i`'s ring) runs on CPU 0,
//! - `i`'s thread runs everything the forwarder does, from building the skb to handing the
//!   forwarded frame to `s` (TC, netfilter, routing, XDP...), alone on the forwarder CPU,
//! - `s`'s thread (the sink: no address, no forwarding, the stack drops the frame) on CPU 0;
//!   where live frames are refused, the reflector's XDP program runs there instead and sends
//!   the frames back into `g` ([`super::reflector`]).
//!
//! The forwarder's CPU time is its thread's (`CLOCK_PROCESS_CPUTIME_ID` of the thread), to the
//! nanosecond; without `CONFIG_IRQ_TIME_ACCOUNTING` (this kernel) interrupts that hit it are
//! charged to it too.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::BenchError;
use crate::netns::Netns;

pub const GEN_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
pub const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_NET: &str = "10.244.1.1/24";

/// Packet counters of one device, as `ip -s link` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// The three namespaces and their devices; everything is deleted on drop (the namespaces take
/// their veths and NAPI threads with them).
#[derive(Debug)]
pub struct FwdTopology {
    pub sender: Netns,
    pub fwd: Netns,
    pub sink: Netns,
    /// Devices: generator's, forwarder's ingress and egress, sink's.
    pub g: String,
    pub i: String,
    pub o: String,
    pub s: String,
    pub g_mac: [u8; 6],
    pub i_mac: [u8; 6],
    pub gen_ifindex: u32,
    /// The sink's veth (where the reflector runs, if there is one).
    pub sink_ifindex: u32,
    /// Thread ids of the NAPI threads of `i` (the forwarder) and `s` (the sink).
    pub fwd_thread: i32,
    pub sink_thread: i32,
}

fn ip(ns: Option<&Netns>, args: &[&str]) -> Result<String, BenchError> {
    match ns {
        Some(ns) => ns.output("ip", args),
        None => {
            let output = std::process::Command::new("ip").args(args).output().map_err(|e| {
                BenchError::Spawn { program: "ip".into(), namespace: "host".into(), cause: e }
            })?;
            if !output.status.success() {
                return Err(BenchError::Failed {
                    program: format!("ip {}", args.join(" ")),
                    namespace: "host".into(),
                    status: output.status.to_string(),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                });
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
    }
}

fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6], BenchError> {
    let json = ip(Some(ns), &["-j", "link", "show", "dev", dev])?;
    let value: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| BenchError::Lab(format!("ip -j link show {dev}: {e}")))?;
    let text = value[0]["address"]
        .as_str()
        .ok_or_else(|| BenchError::Lab(format!("no address for {dev} in {}", ns.name())))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(BenchError::Lab(format!("bad MAC {text} of {dev}")));
    }
    for (slot, part) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(part, 16)
            .map_err(|e| BenchError::Lab(format!("bad MAC {text} of {dev}: {e}")))?;
    }
    Ok(mac)
}

/// Reads `dev`'s counters inside `ns`.
pub fn counters(ns: &Netns, dev: &str) -> Result<LinkCounters, BenchError> {
    let json = ip(Some(ns), &["-j", "-s", "link", "show", "dev", dev])?;
    let value: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| BenchError::Lab(format!("ip -j -s link show {dev}: {e}")))?;
    let stats = &value[0]["stats64"];
    let get = |dir: &str, what: &str| stats[dir][what].as_u64().unwrap_or(0);
    Ok(LinkCounters {
        rx_packets: get("rx", "packets"),
        rx_dropped: get("rx", "dropped"),
        tx_packets: get("tx", "packets"),
        tx_dropped: get("tx", "dropped"),
    })
}

/// Thread ids of the kernel threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .collect()
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
pub fn pin(tid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the nice value of thread `tid` (0: the calling thread).
pub fn set_nice(tid: i32, nice: i32) -> std::io::Result<()> {
    let tid = u32::try_from(tid).map_err(std::io::Error::other)?;
    // SAFETY: setpriority with plain integers; on Linux PRIO_PROCESS names one thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value, put back when dropped.
#[derive(Debug)]
pub struct NiceGuard {
    previous: i32,
}

impl NiceGuard {
    /// Sets the calling thread's nice value to `nice` (threads it spawns inherit it).
    pub fn set(nice: i32) -> std::io::Result<Self> {
        // SAFETY: getpriority with plain integers; -1 is a valid answer, errno tells.
        let previous = unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0)
        };
        if previous == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
            return Err(std::io::Error::last_os_error());
        }
        set_nice(0, nice)?;
        Ok(Self { previous })
    }
}

impl Drop for NiceGuard {
    fn drop(&mut self) {
        // Raising a nice value back is always allowed; nothing to do if it fails.
        let _ = set_nice(0, self.previous);
    }
}

/// How often thread `tid` went to sleep (`voluntary_ctxt_switches`): a NAPI thread sleeps only
/// when its ring is empty.
pub fn sleeps(tid: i32) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .map_err(|e| BenchError::Lab(format!("/proc/{tid}/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| BenchError::Lab(format!("no voluntary_ctxt_switches for thread {tid}")))
}

/// CPU time of thread `tid` (of any process, kernel threads included): the CPU clock of the
/// task as a process (`MAKE_PROCESS_CPUCLOCK(tid, CPUCLOCK_SCHED)`), which for a kernel thread
/// is the thread itself.
pub fn cpu_time(tid: i32) -> Result<Duration, BenchError> {
    let clock: libc::clockid_t = ((!tid) << 3) | 2;
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(BenchError::Lab(format!(
            "CPU clock of thread {tid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    ))
}

fn in_ns<T: Send>(
    ns: &Netns,
    what: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> Result<T, BenchError> {
    switchyard_lab::netns::run_in(ns.name(), f)
        .map_err(|e| BenchError::Lab(e.to_string()))?
        .map_err(|e| BenchError::Lab(format!("{what} in {}: {e}", ns.name())))
}

/// Turns on threaded NAPI for `dev` and returns its thread, pinned to `cpu`.
pub(super) fn napi_thread(ns: &Netns, dev: &str, cpu: usize) -> Result<i32, BenchError> {
    ns.output("sh", &["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")])?;
    let prefix = format!("napi/{dev}-");
    let found = threads_named(&prefix);
    let [tid] = found[..] else {
        return Err(BenchError::Lab(format!(
            "expected one NAPI thread {prefix}* for {dev} in {}, found {found:?}",
            ns.name()
        )));
    };
    pin(tid, cpu).map_err(|e| BenchError::Lab(format!("pinning {prefix}* to CPU {cpu}: {e}")))?;
    Ok(tid)
}

/// The index of `dev` in `ns`.
fn ifindex(ns: &Netns, dev: &str) -> Result<u32, BenchError> {
    let name = std::ffi::CString::new(dev).map_err(|e| BenchError::Lab(e.to_string()))?;
    in_ns(ns, "ifindex", move || {
        // SAFETY: a NUL-terminated name that outlives the call.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => Err(std::io::Error::last_os_error()),
            index => Ok(index),
        }
    })
}

impl FwdTopology {
    /// Creates the namespaces and devices, the forwarder's thread on `fwd_cpu`, the sink's on
    /// `gen_cpu`. Device names carry this process's id and a counter, so the NAPI threads
    /// (named after them) are told apart from anyone else's.
    pub fn up(fwd_cpu: usize, gen_cpu: usize) -> Result<Self, BenchError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "f{}{:02}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed) % 100
        );
        let sender = Netns::create("sybench-fwdg")?;
        let fwd = Netns::create("sybench-fwdn")?;
        let sink = Netns::create("sybench-fwds")?;
        for ns in [&sender, &fwd, &sink] {
            // No IPv6: no router solicitations or MLD reports on the measured links.
            ns.output("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
            ns.output("sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
            ip(Some(ns), &["link", "set", "lo", "up"])?;
        }
        fwd.output("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        let (g, i, o, s) =
            (format!("{tag}g"), format!("{tag}i"), format!("{tag}o"), format!("{tag}s"));
        ip(
            None,
            &[
                "link",
                "add",
                &g,
                "netns",
                sender.name(),
                "type",
                "veth",
                "peer",
                "name",
                &i,
                "netns",
                fwd.name(),
            ],
        )?;
        ip(
            None,
            &[
                "link",
                "add",
                &o,
                "netns",
                fwd.name(),
                "type",
                "veth",
                "peer",
                "name",
                &s,
                "netns",
                sink.name(),
            ],
        )?;
        ip(Some(&sender), &["addr", "add", &format!("{GEN_IP}/24"), "dev", &g])?;
        ip(Some(&fwd), &["addr", "add", &format!("{NODE_IP}/24"), "dev", &i])?;
        ip(Some(&fwd), &["addr", "add", POD_NET, "dev", &o])?;
        ip(Some(&sender), &["link", "set", &g, "up"])?;
        ip(Some(&fwd), &["link", "set", &i, "up"])?;
        ip(Some(&fwd), &["link", "set", &o, "up"])?;
        ip(Some(&sink), &["link", "set", &s, "up"])?;
        let s_mac = mac_of(&sink, &s)?;
        let s_mac_text = s_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        ip(
            Some(&fwd),
            &[
                "neigh",
                "replace",
                &POD_IP.to_string(),
                "lladdr",
                &s_mac_text,
                "dev",
                &o,
                "nud",
                "permanent",
            ],
        )?;
        let (i2, s2, o2) = (i.clone(), s.clone(), o.clone());
        in_ns(&fwd, "GRO on, TSO off", move || {
            switchyard_lab::offload::set_gro(&i2, true)?;
            switchyard_lab::offload::set_tso(&o2, false)
        })?;
        in_ns(&sink, "GRO on", move || switchyard_lab::offload::set_gro(&s2, true))?;
        // `g` with TSO off too: where live frames are refused, the generator's packet socket
        // sends through `g` like any device, and only then do its frames go to `i`'s thread.
        let g3 = g.clone();
        in_ns(&sender, "TSO off", move || switchyard_lab::offload::set_tso(&g3, false))?;
        let fwd_thread = napi_thread(&fwd, &i, fwd_cpu)?;
        let sink_thread = napi_thread(&sink, &s, gen_cpu)?;
        let g_mac = mac_of(&sender, &g)?;
        let i_mac = mac_of(&fwd, &i)?;
        let gen_ifindex = ifindex(&sender, &g)?;
        let sink_ifindex = ifindex(&sink, &s)?;
        Ok(Self {
            sender,
            fwd,
            sink,
            g,
            i,
            o,
            s,
            g_mac,
            i_mac,
            gen_ifindex,
            sink_ifindex,
            fwd_thread,
            sink_thread,
        })
    }
}
