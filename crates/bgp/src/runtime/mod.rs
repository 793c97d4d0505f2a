//! The tokio runtime (placeholder until the next step).
