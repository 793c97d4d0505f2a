//! Maglev consistent hashing tables, identical on every machine.
//!
//! Every director and node must compute the same lookup table from the same backend set, or a
//! connection moved between load balancers lands on a different backend. So everything that feeds
//! the table is pinned down: backends are sorted by identity bytes, the hash is SipHash-2-4 under
//! a cluster-wide 128-bit [`Seed`], and the fill order is the one documented in `docs/maglev.md`.
//! The crate does no I/O and uses only `core` and `alloc`.
//!
//! ```
//! use switchyard_maglev::{Backend, MaglevConfig, Table, TableSize};
//!
//! let config = MaglevConfig { size: TableSize::new(16_381)?, ..MaglevConfig::default() };
//! let backends = [Backend::new("10.0.0.1:8080", 1), Backend::new("10.0.0.2:8080", 2)];
//! let built = Table::build(&config, &backends)?;
//! assert_eq!(built.table.slots().len(), 16_381);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]

extern crate alloc;

mod backend;
mod backend_list;
mod flow;
mod populate;
mod seed;
mod siphash;
mod size;
mod table;

pub use backend::{Backend, Permutation, canonical_identity, canonical_socket_addr};
pub use backend_list::{BackendListError, LineError, parse_backend_list};
pub use flow::{
    FLOW_HASH_C_ROUNDS, FLOW_HASH_D_ROUNDS, FLOW_HASH_NAME, FlowKey, FlowPrefix, MixedFamilies,
};
pub use seed::{Seed, SeedError};
pub use siphash::{SipState, siphash13, siphash24};
pub use size::{TableSize, TableSizeError};
pub use table::{BuildError, Built, MaglevConfig, SizeMismatch, Table, Warning};
