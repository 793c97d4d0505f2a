//! Maglev consistent hashing tables, identical on every machine.
