//! Errors shown with all their causes, each once (the error rule of docs/architecture.md).
//!
//! Every error of ours names what was being done and leaves the cause to `#[source]`; a message
//! never repeats its source. Whoever shows an error to a person (a log line, an HTTP reply)
//! therefore shows the whole chain: `error!(err = %ErrorChain(&err), "…")` prints
//! `map sy_backends: the OS error` on one line, each cause once. Errors of other crates that
//! do repeat their source (aya's `EbpfError::MapError`, kube's) are shown without the repeat.

use std::error::Error;
use std::fmt;

/// Displays an error and its sources on one line, separated by `": "`; a source whose text its
/// error's message already contains is not written again.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            source = cause.source();
        }
        Ok(())
    }
}

/// The first link of the chain whose message repeats its source's, as `(message, source)`;
/// `None` when the error keeps the rule. For tests of every error type.
pub fn repeated_source(error: &(dyn Error + 'static)) -> Option<(String, String)> {
    let mut current = error;
    while let Some(source) = current.source() {
        let (message, cause) = (current.to_string(), source.to_string());
        if !cause.is_empty() && message.contains(&cause) {
            return Some((message, cause));
        }
        current = source;
    }
    None
}

/// Panics, naming the error, when its message repeats its source (see [`repeated_source`]).
#[track_caller]
pub fn assert_source_not_repeated(error: &(dyn Error + 'static)) {
    if let Some((message, cause)) = repeated_source(error) {
        panic!("the message {message:?} repeats its source {cause:?} ({error:?})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        /// Keeps the rule.
        #[error("map {map}")]
        Clean { map: &'static str, source: std::io::Error },
        /// Breaks it.
        #[error("map {map}: {source}")]
        Repeats { map: &'static str, source: std::io::Error },
        /// Wraps another error of ours.
        #[error("programming")]
        Outer(#[source] Box<Sample>),
    }

    fn io() -> std::io::Error {
        std::io::Error::other("no space left")
    }

    #[test]
    fn the_chain_shows_every_cause_once() {
        let error = Sample::Outer(Box::new(Sample::Clean { map: "sy_ct", source: io() }));
        assert_eq!(ErrorChain(&error).to_string(), "programming: map sy_ct: no space left");
        assert_eq!(repeated_source(&error), None);
    }

    #[test]
    fn a_source_repeated_by_another_crate_is_shown_once() {
        let error = Sample::Outer(Box::new(Sample::Repeats { map: "sy_ct", source: io() }));
        assert_eq!(ErrorChain(&error).to_string(), "programming: map sy_ct: no space left");
    }

    #[test]
    fn a_repeated_source_is_found_at_any_depth() {
        let error = Sample::Outer(Box::new(Sample::Repeats { map: "sy_ct", source: io() }));
        let found = repeated_source(&error);
        let expected = ("map sy_ct: no space left".to_owned(), "no space left".to_owned());
        assert_eq!(found, Some(expected));
    }

    #[test]
    #[should_panic(expected = "repeats its source \"no space left\"")]
    fn the_assertion_fails_on_a_repeated_source() {
        assert_source_not_repeated(&Sample::Repeats { map: "sy_ct", source: io() });
    }
}
