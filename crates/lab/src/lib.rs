//! Network-namespace clusters for tests, benchmarks and switchyard lab.
