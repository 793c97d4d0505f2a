//! Network-namespace clusters for tests, benchmarks and `switchyard lab`.

pub mod privilege;

pub use privilege::require_root;
