//! The eBPF programs (C), their shared structs, and the loader.
