//! The socket path (`c/sock.bpf.c`): what connect()/sendmsg() of a client on this node gets.
//! Its Maglev hash is over the socket cookie and its random pick per connection, so the answer
//! names a backend only for sockets that already exist (`sy_sock_revnat`, `sock_diag`).

use std::net::SocketAddr;

use switchyard_bpf::Maps;
use switchyard_bpf::abi::{self, Addr, Frontend};
use switchyard_bpf::maps::names;
use switchyard_bpf::mirror::{self, MapView};

use super::{Decision, Explanation, ObservedSocket, TranslatedSocket, maglev_view};
use crate::Error;

fn map_err(name: &'static str, source: aya::maps::MapError) -> Error {
    Error::Bpf(switchyard_bpf::Error::Map { name, source })
}

/// Fills `out` for frontend `fe` on the socket path: existing translations, the client's own
/// sockets, and how a new connection is decided.
pub(super) fn explain_socket_path(
    maps: &Maps,
    fe: &Frontend,
    sockets: &[ObservedSocket],
    out: &mut Explanation,
) -> Result<(), Error> {
    out.existing_sockets = existing_sockets(maps, fe.id)?;
    out.sockets = translated_sockets(maps, fe, sockets)?;
    if fe.backend_count == 0 {
        out.decision = Decision {
            method: "refused",
            backend: None,
            detail: "no backends: connect()/sendmsg() fails at once with ECONNREFUSED \
                     (reject_no_backend)"
                .into(),
        };
        return Ok(());
    }
    if fe.flags & abi::FE_AFFINITY != 0 {
        out.policy.push(
            "affinity entries are keyed by the client's network namespace cookie, which an \
             address does not name: a live entry for that namespace wins over the pick below"
                .into(),
        );
    }
    out.decision = if fe.flags & abi::FE_MAGLEV != 0 {
        Decision {
            method: "maglev-per-socket",
            backend: None,
            detail: "Maglev over the socket cookie: decided when the socket connects or first \
                     sends; `sockets` shows this client's translated sockets with their slots, \
                     existing_sockets the choices made so far"
                .into(),
        }
    } else {
        Decision {
            method: "random",
            backend: None,
            detail: format!(
                "one of {} slots chosen per connection by bpf_get_prandom_u32 (each 1/{})",
                fe.backend_count, fe.backend_count
            ),
        }
    };
    // The client's own translated sockets are facts, not predictions: with one socket (SRC
    // with its port) it names the backend.
    if let [only] = out.sockets.as_slice() {
        let backend = out
            .candidates
            .iter()
            .map(|c| &c.backend)
            .find(|b| SocketAddr::new(b.ip, b.port) == only.backend);
        out.decision = Decision {
            method: "existing-socket",
            backend: backend.cloned(),
            detail: format!(
                "socket cookie {} was connected to {} by the socket programs (sy_sock_revnat)",
                only.cookie, only.backend
            ),
        };
    }
    out.translation.push(
        "connect()/sendmsg() destination rewritten to the backend (no packet NAT); replies and \
         getpeername() show the frontend"
            .into(),
    );
    Ok(())
}

fn existing_sockets(maps: &Maps, frontend_id: u32) -> Result<Vec<(SocketAddr, u64)>, Error> {
    let mut counts = std::collections::BTreeMap::<SocketAddr, u64>::new();
    for entry in maps.sock_revnat.iter() {
        let (key, value) = entry.map_err(|e| map_err(names::SOCK_REVNAT, e))?;
        if value.frontend_id == frontend_id {
            let addr = SocketAddr::new(key.addr.to_ip(key.family), u16::from_be(key.port));
            *counts.entry(addr).or_default() += 1;
        }
    }
    Ok(counts.into_iter().collect())
}

/// The client's sockets that `sy_sock_revnat` says were translated for this frontend, with the
/// Maglev slot of each cookie (`sy_sock_hash()`: SipHash-2-4 of the cookie, 8 bytes LE).
fn translated_sockets(
    maps: &Maps,
    fe: &Frontend,
    sockets: &[ObservedSocket],
) -> Result<Vec<TranslatedSocket>, Error> {
    let mut out = Vec::new();
    for s in sockets {
        let (addr, family) = Addr::from_ip(s.peer.ip());
        let key = abi::SockRevnatKey {
            cookie: s.cookie,
            addr,
            port: s.peer.port().to_be(),
            family,
            pad: [0; 5],
        };
        let revnat = match maps.sock_revnat.get(&key, 0) {
            Ok(v) => v,
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(source) => return Err(map_err(names::SOCK_REVNAT, source)),
        };
        if revnat.frontend_id != fe.id {
            continue;
        }
        let maglev = match MapView::config(maps)? {
            Some(cfg) if fe.flags & abi::FE_MAGLEV != 0 => Some(maglev_view(
                maps,
                fe,
                mirror::sock_hash(&cfg, s.cookie),
                format!("socket cookie {} (8 bytes little-endian)", s.cookie),
            )?),
            _ => None,
        };
        out.push(TranslatedSocket { cookie: s.cookie, source: s.source, backend: s.peer, maglev });
    }
    Ok(out)
}
