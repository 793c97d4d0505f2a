//! Built-in servers and clients for lab traffic, usable as a library (on a thread inside a
//! namespace, see [`crate::Lab::run_in`]) and as processes (`switchyard lab serve|client`).
//!
//! Every server answers with one JSON [`Reply`] naming itself and the peer address it saw, so a
//! client learns which backend answered and whether the client address was preserved. Every
//! client result is a serde struct printed as one JSON line by the CLI.

pub mod bird;
pub mod clients;
pub mod fleet;
pub mod gobgp;
pub mod ipv6_ext;
pub mod raw;
pub mod servers;
mod udp_reply;

use serde::{Deserialize, Serialize};

/// What every built-in server answers: its name, the peer address it saw, and the request echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Name of the answering server (the pod name).
    pub backend: String,
    /// Source address of the request as the server saw it (`ip:port`).
    pub peer: String,
    /// The request line or datagram, echoed.
    pub echo: String,
}
