//! Limits on what a manifest file may hold, checked before parsing so no file can stall a reader.
//!
//! The YAML parser's cost grows with the square of flow nesting (a 400 kB file of `[` took over a
//! minute), and one huge file would hold every agent reading the directory. Nothing a cluster
//! needs comes near these limits: the API server refuses requests above 3 MiB, and Kubernetes
//! objects nest a dozen levels deep.

/// Largest manifest file read (bytes).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest YAML document (bytes): the API server's request limit.
pub const MAX_DOCUMENT_BYTES: usize = 3 << 20;
/// Deepest flow nesting (`[` / `{`) in a YAML document.
pub const MAX_FLOW_NESTING: usize = 64;

/// Why a YAML document is refused before parsing, if it is.
pub(crate) fn check_yaml_document(text: &str) -> Result<(), String> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "document is {} bytes, more than the limit of {MAX_DOCUMENT_BYTES} (3 MiB, the API \
             server's request limit); not parsed",
            text.len()
        ));
    }
    if let Some(line) = too_deep(text) {
        return Err(format!(
            "flow nesting ([ and {{) deeper than {MAX_FLOW_NESTING} levels at line {line}; not parsed"
        ));
    }
    Ok(())
}

/// The 1-based line (within `text`) where flow nesting first exceeds [`MAX_FLOW_NESTING`].
/// Brackets inside quoted scalars and comments do not count; a quote starts a quoted scalar only
/// where a token may start, so an apostrophe in plain text (`don't`) does not hide what follows.
fn too_deep(text: &str) -> Option<usize> {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = State::Plain;
    let mut depth = 0usize;
    let mut line = 1;
    let mut previous = b'\n';
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if byte == b'\n' {
            line += 1;
            if state == State::Comment {
                state = State::Plain;
            }
        }
        let token_start = matches!(previous, b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':');
        match state {
            State::Plain => match byte {
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_FLOW_NESTING {
                        return Some(line);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b'\'' if token_start => state = State::Single,
                b'"' if token_start => state = State::Double,
                b'#' if matches!(previous, b' ' | b'\t' | b'\n') => state = State::Comment,
                _ => {}
            },
            State::Single if byte == b'\'' => state = State::Plain,
            State::Double if escaped => escaped = false,
            State::Double if byte == b'\\' => escaped = true,
            State::Double if byte == b'"' => state = State::Plain,
            State::Single | State::Double | State::Comment => {}
        }
        previous = byte;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flow_nesting_is_counted_outside_quotes_and_comments() {
        let nested = |depth: usize| format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(too_deep(&nested(MAX_FLOW_NESTING)), None);
        assert_eq!(too_deep(&nested(MAX_FLOW_NESTING + 1)), Some(1));
        let brackets = "[".repeat(100);
        for harmless in [
            format!("a: '{brackets}'\n"),
            format!("a: \"{brackets}\"\n"),
            format!("a: \"\\\"{brackets}\"\n"),
            format!("a: b # {brackets}\n"),
            format!("# {brackets}\n"),
        ] {
            assert_eq!(too_deep(&harmless), None, "{harmless}");
        }
        // An apostrophe inside plain text does not open a quoted scalar.
        assert_eq!(too_deep(&format!("a: don't\nb: {brackets}\n")), Some(2));
        assert_eq!(too_deep("a: {b: [{c: 1}]}\n"), None);
    }

    #[test]
    fn documents_above_the_size_limit_are_refused_by_name() {
        let big = format!("a: '{}'\n", "x".repeat(MAX_DOCUMENT_BYTES));
        let err = check_yaml_document(&big).unwrap_err();
        assert!(err.contains("more than the limit"), "{err}");
        assert!(check_yaml_document("a: b\n").is_ok());
    }
}
