//! The plain-text backend list read by `switchyard maglev`: one backend per line, an optional
//! weight after it, `#` comments. Parsing is here (pure) so the command only does the I/O.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::backend::{Backend, canonical_identity};

/// A line that could not be read, with its 1-based number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BackendListError {
    pub line: usize,
    pub reason: LineError,
}

/// What was wrong with a line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The weight is not a 32-bit unsigned number.
    #[error("weight {text:?} is not a whole number from 0 to 4294967295")]
    InvalidWeight { text: String },
    /// More than a backend and a weight on one line.
    #[error("expected `BACKEND [WEIGHT]`, found {fields} fields")]
    TooManyFields { fields: usize },
    /// The backend was listed before.
    #[error("backend {identity:?} already appears on line {first_line}")]
    Duplicate { identity: String, first_line: usize },
}

/// Parses `BACKEND [WEIGHT]` lines (weight defaults to 1; 0 drains). Blank lines and text after
/// `#` are ignored. Socket addresses are rewritten to their canonical identity, so
/// `[2001:DB8::1]:80` and `[2001:db8:0::1]:80` are the same backend.
pub fn parse_backend_list(text: &str) -> Result<Vec<Backend>, BackendListError> {
    let mut backends = Vec::new();
    let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
    for (line_number, line) in (1..).zip(text.lines()) {
        let content = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = content.split_whitespace().collect();
        let fail = |reason| BackendListError { line: line_number, reason };
        let (identity, weight) = match fields.as_slice() {
            [] => continue,
            [identity] => (*identity, 1),
            [identity, weight] => {
                let weight = weight
                    .parse::<u32>()
                    .map_err(|_| fail(LineError::InvalidWeight { text: weight.to_string() }))?;
                (*identity, weight)
            }
            _ => return Err(fail(LineError::TooManyFields { fields: fields.len() })),
        };
        let identity = canonical_identity(identity).into_owned();
        if let Some(&first_line) = first_lines.get(&identity) {
            return Err(fail(LineError::Duplicate { identity, first_line }));
        }
        first_lines.insert(identity.clone(), line_number);
        backends.push(Backend::new(identity, weight));
    }
    Ok(backends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn well_formed_lists_parse_with_default_weights_and_canonical_identities() {
        let text =
            "# backends\n10.0.0.1:8080\n\n  10.0.0.2:8080 3  # heavier\n[2001:DB8::1]:80 0\n";
        let expected = vec![
            Backend::new("10.0.0.1:8080", 1),
            Backend::new("10.0.0.2:8080", 3),
            Backend::new("[2001:db8::1]:80", 0),
        ];
        assert_eq!(parse_backend_list(text), Ok(expected));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number_and_reason() {
        let cases = [
            ("a 1\nb x\n", 2, LineError::InvalidWeight { text: "x".into() }),
            ("a -1\n", 1, LineError::InvalidWeight { text: "-1".into() }),
            ("a 4294967296\n", 1, LineError::InvalidWeight { text: "4294967296".into() }),
            ("a 1 2\n", 1, LineError::TooManyFields { fields: 3 }),
            (
                "10.0.0.1:80\n\n[::ffff:10.0.0.1]:80\n10.0.0.1:080 2\n",
                4,
                LineError::Duplicate { identity: "10.0.0.1:80".into(), first_line: 1 },
            ),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                parse_backend_list(text),
                Err(BackendListError { line, reason }),
                "{text:?}"
            );
        }
    }
}
