//! Load the object, create or adopt the pinned maps, attach to a cgroup, detach and clean up.
//!
//! Everything lives under one bpffs directory of the agent's own:
//! `<bpf_dir>/<map name>` for each map and `<bpf_dir>/links/<program>-<generation>` for each
//! cgroup attachment. Both outlive the agent. A restarted agent adopts the maps (same pins,
//! entries untouched), attaches its freshly loaded programs next to the old ones
//! (cgroup bpf_links stack like `BPF_F_ALLOW_MULTI`), and only then removes the old links: there is no moment without a
//! program, and running old and new program together is harmless because the first one
//! translates a frontend into a backend and the second then sees a non-frontend address.

use std::{
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapInfo,
    programs::{
        CgroupAttachMode, CgroupSkbAttachType, Program, ProgramError,
        links::{FdLink, PinnedLink},
    },
};
use tracing::{debug, info, warn};

use crate::{
    Error,
    abi::{
        Affinity, AffinityKey, Backend, Config, Counter, Frontend, FrontendCounter, FrontendKey,
        NodeAddrKey, Reason, SlotKey, SockRevnat, SockRevnatKey, SockStickyKey,
    },
    maps::{Maps, names},
    nodeport_abi::SrcRangeKey,
    resize,
};

/// The socket-level programs, by function name in `c/sock.bpf.c`.
pub const SOCK_PROGRAMS: [&str; 8] = [
    "sy_connect4",
    "sy_connect6",
    "sy_sendmsg4",
    "sy_sendmsg6",
    "sy_recvmsg4",
    "sy_recvmsg6",
    "sy_getpeername4",
    "sy_getpeername6",
];

/// Removes a closing socket's reverse-translation entry (`cgroup/sock_release`).
pub const SOCK_RELEASE_PROGRAM: &str = "sy_sock_release";

/// Checks the source of a translated socket's first packet against loadBalancerSourceRanges
/// (`cgroup_skb/egress`).
pub const SOCK_EGRESS_PROGRAM: &str = "sy_sock_egress";

/// Learns each pod namespace's source address from its TCP connections, so loadBalancerSourceRanges
/// can refuse an unbound socket's connect() (`sockops`).
pub const SOCK_OPS_PROGRAM: &str = "sy_sock_ops";

/// Every program attached to the cgroup.
pub const ALL_PROGRAMS: [&str; 11] = [
    SOCK_PROGRAMS[0],
    SOCK_PROGRAMS[1],
    SOCK_PROGRAMS[2],
    SOCK_PROGRAMS[3],
    SOCK_PROGRAMS[4],
    SOCK_PROGRAMS[5],
    SOCK_PROGRAMS[6],
    SOCK_PROGRAMS[7],
    SOCK_RELEASE_PROGRAM,
    SOCK_EGRESS_PROGRAM,
    SOCK_OPS_PROGRAM,
];

/// Subdirectory of the bpffs directory holding the pinned cgroup links.
pub const LINKS_DIR: &str = "links";

/// max_entries of the maps the reconciler sizes (the rest are fixed by the header). The
/// state maps (`frontends`, `slots`, `backends`, `maglev_tables`) and the connection maps
/// (`sock_revnat`, `affinity`, `sock_sticky`) may differ from a pin's size: a pin at least as
/// large is adopted, a smaller one migrated (`crate::resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// `sy_frontends`: frontend entries (one per address, port, protocol and scope).
    pub frontends: u32,
    /// `sy_slots`: backend slots summed over all frontends.
    pub slots: u32,
    /// `sy_backends`: distinct backends.
    pub backends: u32,
    /// `sy_maglev`: frontends with a Maglev table.
    pub maglev_tables: u32,
    /// `sy_sock_revnat`: translated sockets remembered for recvmsg/getpeername (LRU).
    pub sock_revnat: u32,
    /// `sy_affinity`: ClientIP affinity entries (LRU).
    pub affinity: u32,
    /// `sy_sock_sticky`: unconnected UDP socket choices (LRU).
    pub sock_sticky: u32,
    /// `sy_node_addrs`: addresses of this node.
    pub node_addrs: u32,
    /// `sy_src_ranges`: loadBalancerSourceRanges prefixes summed over all frontends.
    pub src_ranges: u32,
}

impl Default for MapSizes {
    /// The defaults of the header (`SY_DEFAULT_*`).
    fn default() -> Self {
        MapSizes {
            frontends: 65_536,
            slots: 1_048_576,
            backends: 262_144,
            maglev_tables: 4_096,
            sock_revnat: 262_144,
            affinity: 65_536,
            sock_sticky: 65_536,
            node_addrs: 256,
            src_ranges: 16_384,
        }
    }
}

/// Where and how to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// bpffs directory of this agent: maps and links are pinned here.
    pub bpf_dir: PathBuf,
    /// Map sizes wanted by this load ([`Datapath::sizes`] tells what was adopted or created).
    pub sizes: MapSizes,
    /// Maglev table size M (prime, at least the largest backend count).
    pub maglev_table_size: u32,
    /// Mount a bpffs on `bpf_dir` when it is not on one already.
    pub mount_bpffs: bool,
    /// Cluster-wide SipHash seed (the Maglev seed of crates/maglev).
    pub hash_seed: [u8; 16],
}

impl LoadOptions {
    /// Defaults for `bpf_dir`: header sizes, M = 16381, mount a bpffs if needed.
    pub fn new(bpf_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            bpf_dir: bpf_dir.into(),
            sizes: MapSizes::default(),
            maglev_table_size: crate::abi::MAGLEV_DEFAULT_TABLE_SIZE,
            mount_bpffs: true,
            hash_seed: switchyard_maglev::Seed::DEFAULT.to_bytes(),
        }
    }
}

/// What a map must look like: (name, key size, value size, max_entries; `None` for the
/// resizable maps, whose size any pin may have).
fn expected_maps(opts: &LoadOptions) -> [(&'static str, usize, usize, Option<u32>); 14] {
    let s = &opts.sizes;
    let fixed = [
        (names::FRONTENDS, size_of::<FrontendKey>(), size_of::<Frontend>(), s.frontends),
        (names::SLOTS, size_of::<SlotKey>(), size_of::<u32>(), s.slots),
        (names::BACKENDS, size_of::<u32>(), size_of::<Backend>(), s.backends),
        (names::MAGLEV, size_of::<u32>(), size_of::<u32>(), s.maglev_tables),
        (names::SOCK_REVNAT, size_of::<SockRevnatKey>(), size_of::<SockRevnat>(), s.sock_revnat),
        (names::AFFINITY, size_of::<AffinityKey>(), size_of::<Affinity>(), s.affinity),
        (names::SOCK_STICKY, size_of::<SockStickyKey>(), size_of::<Affinity>(), s.sock_sticky),
        (names::NODE_ADDRS, size_of::<NodeAddrKey>(), size_of::<u32>(), s.node_addrs),
        (names::COUNTERS, size_of::<u32>(), size_of::<Counter>(), Reason::MAX),
        (names::CONFIG, size_of::<u32>(), size_of::<Config>(), 1),
        // One counter entry per frontend at most.
        (names::FE_COUNTERS, size_of::<u32>(), size_of::<FrontendCounter>(), s.frontends),
        (names::MONITOR, size_of::<u32>(), size_of::<crate::abi::MonitorConfig>(), 1),
        // A ring buffer has no key or value; max_entries is its size in bytes.
        (names::EVENTS, 0, 0, crate::abi::DEFAULT_EVENTS_BYTES),
        (names::SRC_RANGES, size_of::<SrcRangeKey>(), size_of::<u32>(), s.src_ranges),
    ];
    fixed.map(|(name, key, value, max_entries)| {
        let resizable = resize::RESIZABLE.contains(&name);
        (name, key, value, (!resizable).then_some(max_entries))
    })
}

/// The loaded programs and their maps.
#[derive(Debug)]
pub struct Datapath {
    ebpf: Ebpf,
    maps: Maps,
    bpf_dir: PathBuf,
    /// The sizes adopted or created.
    sizes: MapSizes,
    /// Old connection maps of a migration, copied once more after attaching.
    migrated: resize::Migrated,
}

impl Datapath {
    /// Loads the socket-level object: creates the maps, or adopts the ones pinned in
    /// `opts.bpf_dir` by an earlier run (after checking they still fit this build), and
    /// records the load-time settings. Programs are verified on [`Datapath::attach`].
    pub fn load(opts: &LoadOptions) -> Result<Self, Error> {
        if opts.maglev_table_size == 0 {
            return Err(Error::InvalidArgument("Maglev table size must be at least 1".into()));
        }
        prepare_bpf_dir(&opts.bpf_dir, opts.mount_bpffs)?;
        check_pins(opts)?;
        let resizing = resize::prepare(&opts.bpf_dir, &opts.sizes)?;
        let (ebpf, mut maps) = match load_object(opts, &resizing) {
            Ok(loaded) => loaded,
            Err(err) => {
                resizing.abandon(&opts.bpf_dir);
                return Err(err);
            }
        };
        let sizes = resizing.map_sizes(&opts.sizes);
        let migrated = resizing.copy(&mut maps, &opts.bpf_dir)?;

        let config_err = |source| Error::Map { name: names::CONFIG, source };
        let previous = maps.config()?;
        let has_tables = maps.maglev.keys().next().is_some();
        if has_tables && previous.maglev_table_size != opts.maglev_table_size {
            return Err(Error::IncompatiblePin {
                name: names::MAGLEV,
                detail: format!(
                    "holds Maglev tables of size {}, configured size is {}",
                    previous.maglev_table_size, opts.maglev_table_size
                ),
            });
        }
        let (hash_k0, hash_k1) = Config::seed_words(opts.hash_seed);
        let node_netns_cookie = own_netns_cookie().unwrap_or_else(|err| {
            warn!(%err, "network namespace cookie unknown (kernel < 5.14?): loopback NodePorts off");
            0
        });
        let config = Config {
            maglev_table_size: opts.maglev_table_size,
            flags: 0,
            hash_k0,
            hash_k1,
            node_netns_cookie,
        };
        maps.config.set(0, config, 0).map_err(config_err)?;
        info!(bpf_dir = %opts.bpf_dir.display(), adopted = previous.maglev_table_size != 0, ?sizes, "BPF maps ready");
        Ok(Datapath { ebpf, maps, bpf_dir: opts.bpf_dir.clone(), sizes, migrated })
    }

    /// The sizes of the maps as loaded: what was asked, or a larger pin's size.
    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// The maps, for the reconciler.
    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// The maps, for the reconciler.
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// The bpffs directory.
    pub fn bpf_dir(&self) -> &Path {
        &self.bpf_dir
    }

    /// Attaches the socket programs to the cgroup v2 directory `cgroup` and pins the links, then
    /// removes the links of earlier generations (make-before-break). Attachments survive the
    /// process; [`detach`] or [`cleanup`] remove them.
    pub fn attach(&mut self, cgroup: &Path) -> Result<(), Error> {
        let cgroup_dir = fs::File::open(cgroup)
            .map_err(|source| Error::Cgroup { path: cgroup.to_owned(), source })?;
        let links_dir = self.bpf_dir.join(LINKS_DIR);
        fs::create_dir_all(&links_dir).map_err(|source| Error::BpfDir {
            path: links_dir.clone(),
            reason: "creating the links directory",
            source,
        })?;
        let generation = generation();

        // Verify every program before attaching any: a verifier failure changes nothing.
        for name in ALL_PROGRAMS {
            match self.program(name)? {
                Program::CgroupSockAddr(p) if p.fd().is_err() => load_retrying(name, || p.load())?,
                Program::CgroupSock(p) if p.fd().is_err() => load_retrying(name, || p.load())?,
                Program::CgroupSkb(p) if p.fd().is_err() => load_retrying(name, || p.load())?,
                Program::SockOps(p) if p.fd().is_err() => load_retrying(name, || p.load())?,
                _ => {}
            }
        }

        let mut pinned: Vec<PathBuf> = Vec::with_capacity(ALL_PROGRAMS.len());
        for name in ALL_PROGRAMS {
            // bpffs refuses names containing '.'.
            let path = links_dir.join(format!("{name}-{generation}"));
            if let Err(error) = self.attach_one(name, &cgroup_dir, &path) {
                // Roll back this generation; the previous one (if any) keeps running.
                for path in &pinned {
                    let _ = unpin_link(path);
                }
                return Err(error);
            }
            debug!(program = name, cgroup = %cgroup.display(), link = %path.display(), "attached");
            pinned.push(path);
        }

        // The new generation is in place: retire the old ones. Only socket-program links: the
        // TC links (`tc-<device>-...`) share the directory and have generations of their own.
        for path in link_pins(&self.bpf_dir)? {
            let suffix = format!("-{generation}");
            let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            let is_current = name.ends_with(suffix.as_bytes());
            let is_socket_link =
                ALL_PROGRAMS.iter().any(|p| name.starts_with(format!("{p}-").as_bytes()));
            if is_socket_link && !is_current {
                unpin_link(&path)?;
                debug!(link = %path.display(), "old link removed");
            }
        }
        // The old programs are gone: what they wrote into migrated connection maps since the
        // copy goes to the new maps.
        self.migrated.catch_up(&mut self.maps)?;
        info!(cgroup = %cgroup.display(), "socket programs attached");
        Ok(())
    }
}

/// Loads the socket object with the sizes `resizing` chose (pins of the other maps adopted).
fn load_object(opts: &LoadOptions, resizing: &resize::Resizing) -> Result<(Ebpf, Maps), Error> {
    let s = &opts.sizes;
    let mut loader = EbpfLoader::new();
    loader
        .default_map_pin_directory(&opts.bpf_dir)
        .map_max_entries(names::NODE_ADDRS, s.node_addrs)
        .map_max_entries(names::SRC_RANGES, s.src_ranges);
    for (name, size) in &resizing.sizes {
        loader.map_max_entries(name, *size);
    }
    let mut ebpf = loader.load(crate::sock_object())?;
    let maps = Maps::from_ebpf(&mut ebpf)?;
    Ok((ebpf, maps))
}

impl Datapath {
    fn program(&mut self, name: &'static str) -> Result<&mut Program, Error> {
        self.ebpf.program_mut(name).ok_or(Error::MissingProgram { name })
    }

    /// Attaches one program and pins its link at `path`.
    fn attach_one(
        &mut self,
        name: &'static str,
        cgroup: &fs::File,
        path: &Path,
    ) -> Result<(), Error> {
        let program_err = |source| Error::Program { name, source };
        let not_a_link = |e: &dyn std::fmt::Display| Error::LinkPin {
            path: path.to_owned(),
            detail: format!("not a bpf_link (kernel without BPF_LINK_CREATE?): {e}"),
        };
        // Mode Single becomes flags 0, which BPF_LINK_CREATE requires; cgroup bpf_links always
        // stack like BPF_F_ALLOW_MULTI, so old and new generations coexist.
        let fd_link = match self.program(name)? {
            Program::CgroupSockAddr(p) => {
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(program_err)?;
                let link = p.take_link(id).map_err(program_err)?;
                FdLink::try_from(link).map_err(|e| not_a_link(&e))?
            }
            Program::CgroupSock(p) => {
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(program_err)?;
                let link = p.take_link(id).map_err(program_err)?;
                FdLink::try_from(link).map_err(|e| not_a_link(&e))?
            }
            Program::CgroupSkb(p) => {
                let id = p
                    .attach(cgroup, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
                    .map_err(program_err)?;
                let link = p.take_link(id).map_err(program_err)?;
                FdLink::try_from(link).map_err(|e| not_a_link(&e))?
            }
            Program::SockOps(p) => {
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(program_err)?;
                let link = p.take_link(id).map_err(program_err)?;
                FdLink::try_from(link).map_err(|e| not_a_link(&e))?
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "program {name} has unexpected type {:?}",
                    other.prog_type()
                )));
            }
        };
        fd_link
            .pin(path)
            .map_err(|e| Error::LinkPin { path: path.to_owned(), detail: error_chain(&e) })?;
        Ok(())
    }
}

/// An error and its sources, for messages that would otherwise hide the OS error.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    switchyard_error::ErrorChain(error).to_string()
}

/// A generation tag for link pins that differs between runs of the agent.
pub(crate) fn generation() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}{nanos}", std::process::id())
}

/// Link pins under `<bpf_dir>/links`, sorted (none when the directory is missing). Every kind of
/// link (socket, TC, XDP) shares the directory; callers pick theirs by name.
pub(crate) fn link_pins(bpf_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = bpf_dir.join(LINKS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::BpfDir { path: dir, reason: "listing links", source }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::BpfDir {
            path: dir.clone(),
            reason: "listing links",
            source,
        })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Loads (verifies) a program through `load`, retrying a few times when the kernel answers
/// EAGAIN: the verifier gives up with EAGAIN whenever a signal is pending for the loading
/// thread (another thread's child process exiting, say), which says nothing about the program.
/// libbpf retries the same way.
pub(crate) fn load_retrying(
    name: &'static str,
    mut load: impl FnMut() -> Result<(), ProgramError>,
) -> Result<(), Error> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < ATTEMPTS =>
            {
                debug!(program = name, attempt, "verifier interrupted (EAGAIN), loading again");
                attempt += 1;
            }
            result => return result.map_err(|source| Error::Program { name, source }),
        }
    }
}

/// Removes one pinned link; the attachment goes away with the last reference.
pub(crate) fn unpin_link(path: &Path) -> Result<(), Error> {
    let link = PinnedLink::from_pin(path)
        .map_err(|e| Error::LinkPin { path: path.to_owned(), detail: error_chain(&e) })?;
    let fd_link = link
        .unpin()
        .map_err(|e| Error::LinkPin { path: path.to_owned(), detail: error_chain(&e) })?;
    drop(fd_link);
    Ok(())
}

/// Unpins the links in `links_dir` named `<prefix><generation>` of generations other than
/// `current` (a restarted program is attached before the old attachment goes).
pub(crate) fn unpin_older_links(
    links_dir: &Path,
    prefix: &str,
    current: &str,
) -> Result<(), Error> {
    let listing =
        |source| Error::BpfDir { path: links_dir.to_owned(), reason: "listing links", source };
    for entry in fs::read_dir(links_dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(prefix)
            && rest != current
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            unpin_link(&entry.path())?;
        }
    }
    Ok(())
}

/// Detaches every program attached from `bpf_dir` (removes the pinned links); maps stay.
/// Returns how many links were removed.
pub fn detach(bpf_dir: &Path) -> Result<usize, Error> {
    let pins = link_pins(bpf_dir)?;
    for path in &pins {
        unpin_link(path)?;
    }
    let links_dir = bpf_dir.join(LINKS_DIR);
    match fs::remove_dir(&links_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::BpfDir {
                path: links_dir,
                reason: "removing the links directory",
                source,
            });
        }
    }
    Ok(pins.len())
}

/// Removes everything this crate installed under `bpf_dir`: links (detaching the programs)
/// and map pins. The directory itself (and a bpffs mounted on it) stays.
pub fn cleanup(bpf_dir: &Path) -> Result<(), Error> {
    let links = detach(bpf_dir)?;
    let mut maps = 0;
    for name in names::ALL {
        let path = bpf_dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => maps += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::BpfDir { path, reason: "removing a map pin", source });
            }
        }
    }
    info!(bpf_dir = %bpf_dir.display(), links, maps, "cleaned up");
    Ok(())
}

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> Result<bool, Error> {
    let stat = nix::sys::statfs::statfs(path).map_err(|errno| Error::BpfDir {
        path: path.to_owned(),
        reason: "statfs",
        source: errno.into(),
    })?;
    Ok(stat.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Mounts a bpffs on `path` (which must exist).
pub fn mount_bpffs(path: &Path) -> Result<(), Error> {
    use nix::mount::{MsFlags, mount};
    mount(Some("bpffs"), path, Some("bpf"), MsFlags::empty(), None::<&str>).map_err(|errno| {
        Error::BpfDir { path: path.to_owned(), reason: "mounting bpffs", source: errno.into() }
    })
}

/// Unmounts the bpffs on `path` lazily, so a pin still open elsewhere cannot keep it busy.
pub fn unmount_bpffs(path: &Path) -> Result<(), Error> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(|errno| Error::BpfDir {
        path: path.to_owned(),
        reason: "unmounting bpffs",
        source: errno.into(),
    })
}

/// A directory the agent creates in a bpffs it mounted itself: `--cleanup` unmounts only
/// such a bpffs, never one the host (or an init container) mounted. bpffs holds directories
/// and pins, so the mark lives in the filesystem it is about.
pub const MOUNTED_MARK: &str = "switchyard-mounted";

/// Mounts a bpffs on `dir` and marks it as ours (see [`MOUNTED_MARK`]).
fn mount_marked(dir: &Path) -> Result<(), Error> {
    mount_bpffs(dir)?;
    let mark = dir.join(MOUNTED_MARK);
    fs::create_dir(&mark).map_err(|source| Error::BpfDir {
        path: mark,
        reason: "marking the bpffs as mounted by switchyard",
        source,
    })
}

/// Whether `bpf_dir` is a bpffs the agent mounted ([`MOUNTED_MARK`]).
pub fn mounted_by_us(bpf_dir: &Path) -> bool {
    bpf_dir.join(MOUNTED_MARK).is_dir() && is_bpffs(bpf_dir).unwrap_or(false)
}

/// Unmounts `bpf_dir` if the agent mounted it (after [`cleanup`] removed the pins); a bpffs
/// someone else mounted stays. Returns whether it unmounted.
pub fn unmount_if_ours(bpf_dir: &Path) -> Result<bool, Error> {
    if !mounted_by_us(bpf_dir) {
        return Ok(false);
    }
    let mark = bpf_dir.join(MOUNTED_MARK);
    fs::remove_dir(&mark).map_err(|source| Error::BpfDir {
        path: mark,
        reason: "removing the mount mark",
        source,
    })?;
    unmount_bpffs(bpf_dir)?;
    Ok(true)
}

pub(crate) fn prepare_bpf_dir(dir: &Path, mount: bool) -> Result<(), Error> {
    let no_bpffs = |source| Error::NoBpffs { path: dir.to_owned(), source: Box::new(source) };
    fs::create_dir_all(dir).map_err(|source| {
        no_bpffs(Error::BpfDir { path: dir.to_owned(), reason: "creating", source })
    })?;
    if is_bpffs(dir)? {
        return Ok(());
    }
    if !mount {
        return Err(Error::NotBpffs { path: dir.to_owned() });
    }
    warn!(bpf_dir = %dir.display(), "not on a bpffs: mounting one (`--cleanup` unmounts it)");
    mount_marked(dir).map_err(no_bpffs)
}

/// Removes the map pins `names` from `bpf_dir` (absent ones are fine).
pub(crate) fn remove_map_pins(bpf_dir: &Path, names: &[&str]) -> Result<(), Error> {
    for name in names {
        let path = bpf_dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::BpfDir { path, reason: "removing a map pin", source });
            }
        }
    }
    Ok(())
}

/// Refuses pins from an earlier run that no longer match this build's layout or sizes:
/// adopting them would make the programs misread every entry.
fn check_pins(opts: &LoadOptions) -> Result<(), Error> {
    check_pinned_layouts(&opts.bpf_dir, expected_maps(opts))
}

/// Compares every pinned map of `expected` (name, key size, value size, max_entries) found in
/// `bpf_dir` with what this build wants; absent pins are fine (they are created). A `None`
/// size accepts any (the resizable maps: `crate::resize`).
pub(crate) fn check_pinned_layouts(
    bpf_dir: &Path,
    expected: impl IntoIterator<Item = (&'static str, usize, usize, Option<u32>)>,
) -> Result<(), Error> {
    for (name, key_size, value_size, max_entries) in expected {
        let path = bpf_dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| Error::Map { name, source })?;
        let found = (info.key_size() as usize, info.value_size() as usize, info.max_entries());
        let max_entries = max_entries.unwrap_or(found.2);
        if found != (key_size, value_size, max_entries) {
            return Err(Error::IncompatiblePin {
                name,
                detail: format!(
                    "pinned (key, value, max_entries) = {found:?}, this build wants {:?}",
                    (key_size, value_size, max_entries)
                ),
            });
        }
    }
    Ok(())
}

/// The cookie of the network namespace this process runs in (`SO_NETNS_COOKIE`, kernel 5.14):
/// the socket programs let only this namespace's loopback reach NodePorts, as
/// `bpf_get_netns_cookie` tells them apart.
pub fn own_netns_cookie() -> io::Result<u64> {
    /// `SO_NETNS_COOKIE` from `asm-generic/socket.h` (not exported by libc for this target).
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: a plain socket(2); the descriptor is owned (closed on drop) right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_error(errno: i32) -> ProgramError {
        ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        }
    }

    #[test]
    fn an_interrupted_verification_is_tried_again_a_few_times_and_nothing_else_is() {
        // EAGAIN twice, then loaded.
        let mut calls = 0;
        let loaded = load_retrying("p", || {
            calls += 1;
            if calls < 3 { Err(load_error(libc::EAGAIN)) } else { Ok(()) }
        });
        assert!(loaded.is_ok());
        assert_eq!(calls, 3);

        // EAGAIN for ever: five attempts, then the error.
        let mut calls = 0;
        let result = load_retrying("p", || {
            calls += 1;
            Err(load_error(libc::EAGAIN))
        });
        assert!(matches!(result, Err(Error::Program { name: "p", .. })));
        assert_eq!(calls, 5);

        // A verifier refusal (EACCES) is final.
        let mut calls = 0;
        let result = load_retrying("p", || {
            calls += 1;
            Err(load_error(libc::EACCES))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
