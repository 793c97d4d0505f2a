//! Maglev tables for frontends that ask for them, from `crates/maglev`, so every node (and
//! `switchyard explain`) computes the same table for the same backend set.

use std::collections::HashMap;
use std::net::SocketAddr;

use switchyard_error::ErrorChain;
use switchyard_maglev::{Backend, MaglevConfig, Table, TableSize, TableSizeError};
use tracing::warn;

use crate::planner::TableBuilder;
use crate::translate::MapBackend;

/// Builds tables of one size with the cluster-wide seed.
#[derive(Debug, Clone, Copy)]
pub struct MaglevTables {
    config: MaglevConfig,
}

impl MaglevTables {
    /// Tables of `size` entries (a prime, as `crates/maglev` requires).
    pub fn new(size: u32) -> Result<Self, TableSizeError> {
        Ok(Self { config: MaglevConfig { size: TableSize::new(size)?, ..MaglevConfig::default() } })
    }

    pub fn size(&self) -> u32 {
        self.config.size.get()
    }
}

impl TableBuilder<MapBackend> for MaglevTables {
    fn build(&self, backends: &[MapBackend]) -> Vec<u32> {
        let identities: Vec<Backend> = backends
            .iter()
            .map(|b| Backend::from_socket_addr(SocketAddr::new(b.ip, b.port), 1))
            .collect();
        match Table::build(&self.config, &identities) {
            Ok(built) => {
                // The table indexes its own (identity-sorted) list; map back to ours.
                let ours: HashMap<&[u8], u32> =
                    identities.iter().zip(0u32..).map(|(b, i)| (b.identity(), i)).collect();
                let table = &built.table;
                let position: Vec<u32> = table
                    .backends()
                    .iter()
                    .map(|b| ours.get(b.identity()).copied().unwrap_or(0))
                    .collect();
                table
                    .slots()
                    .iter()
                    .map(|s| position.get(*s as usize).copied().unwrap_or(0))
                    .collect()
            }
            Err(err) => {
                // Only possible with the same address twice under different flags; spread
                // evenly so the frontend still works.
                let addresses: Vec<String> =
                    backends.iter().map(|b| SocketAddr::new(b.ip, b.port).to_string()).collect();
                warn!(
                    err = %ErrorChain(&err),
                    backends = %addresses.join(","),
                    "Maglev table could not be built for these backends; spreading entries round-robin"
                );
                let n = backends.len().max(1) as u32;
                (0..self.size()).map(|i| i % n).collect()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn backend(last: u8) -> MapBackend {
        MapBackend { ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port: 80, flags: 0 }
    }

    #[test]
    fn tables_follow_the_maglev_crate_whatever_the_input_order() {
        let tables = MaglevTables::new(251).unwrap();
        let forward = [backend(1), backend(2), backend(3)];
        let reverse = [backend(3), backend(2), backend(1)];
        let a: Vec<MapBackend> =
            tables.build(&forward).iter().map(|i| forward[*i as usize]).collect();
        let b: Vec<MapBackend> =
            tables.build(&reverse).iter().map(|i| reverse[*i as usize]).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 251);

        let identities: Vec<Backend> = forward
            .iter()
            .map(|b| Backend::from_socket_addr(SocketAddr::new(b.ip, b.port), 1))
            .collect();
        let built = Table::build(
            &MaglevConfig { size: TableSize::new(251).unwrap(), ..MaglevConfig::default() },
            &identities,
        )
        .unwrap();
        let expected: Vec<String> = (0..251)
            .map(|s| built.table.backend_of_slot(s).unwrap().identity_text().into_owned())
            .collect();
        let ours: Vec<String> = a.iter().map(|b| format!("{}:{}", b.ip, b.port)).collect();
        assert_eq!(ours, expected);
    }

    #[test]
    fn every_backend_owns_entries() {
        let tables = MaglevTables::new(251).unwrap();
        let backends: Vec<MapBackend> = (1..=5).map(backend).collect();
        let table = tables.build(&backends);
        for i in 0..5 {
            assert!(table.contains(&i), "backend {i} owns no entry");
        }
    }
}
