//! The error rule over the whole workspace: no `#[error("…")]` message shows the field that is
//! also the variant's source (`#[source]`, `#[from]`, or a field named `source`), since
//! [`switchyard_error::ErrorChain`] and `{:#}` print the source after the message anyway.
//!
//! The unit tests of each crate construct their errors; this reads every thiserror attribute in
//! `crates/*/src`, so a new variant cannot break the rule unnoticed.

use std::path::{Path, PathBuf};

/// This crate (`crates/error`): its own unit tests break the rule on purpose.
const EXEMPT: &str = "error";

#[test]
fn no_error_message_shows_its_source() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("the crates directory") {
        let dir = entry.expect("a crate directory").path();
        let src = dir.join("src");
        if src.is_dir() && !dir.ends_with(EXEMPT) {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files under {}", files.len(), crates.display());
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for variant in violations(&text) {
            broken.push(format!("{}: {variant}", file.display()));
        }
    }
    assert!(broken.is_empty(), "messages that repeat their source:\n{}", broken.join("\n"));
}

#[test]
fn the_check_finds_each_way_of_naming_a_source() {
    let text = r#"
        #[derive(thiserror::Error)]
        enum E {
            /// Named field called `source`.
            #[error("map {map}: {source}")]
            Named { map: String, source: std::io::Error },
            /// Tuple field with `#[from]`.
            #[error("loading: {0}")]
            Tuple(#[from] std::io::Error),
            /// Another name with `#[source]`, shown through the format arguments.
            #[error("cgroup {}", cause)]
            Args {
                /// The cause.
                #[source]
                cause: std::io::Error,
            },
            /// Keeps the rule.
            #[error("map {map}")]
            Clean { map: String, source: std::io::Error },
            /// Forwards everything.
            #[error(transparent)]
            Transparent(#[from] std::fmt::Error),
        }
    "#;
    assert_eq!(violations(text), ["Named", "Tuple", "Args"]);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Names of the variants (or structs) in `text` whose message shows their source.
fn violations(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("#[error(") {
        rest = &rest[start + "#[error(".len()..];
        let Some(end) = closing(rest, '(', ')') else { break };
        let message = &rest[..end];
        rest = &rest[end + 1..];
        if message.trim_start().starts_with("transparent") {
            continue;
        }
        let (name, body) = item(rest);
        if source_fields(body).iter().any(|field| shows(message, field)) {
            found.push(name.to_owned());
        }
    }
    found
}

/// The item after an attribute: its name and the text between its braces or parentheses.
fn item(mut text: &str) -> (&str, &str) {
    loop {
        text = text.trim_start_matches(|c: char| c == ']' || c.is_whitespace());
        if text.starts_with("///") || text.starts_with("//") {
            text = text.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(attribute) = text.strip_prefix("#[") {
            let end = closing(attribute, '[', ']').unwrap_or(attribute.len());
            text = &attribute[end..];
        } else if let Some(after) =
            ["pub ", "struct ", "enum "].iter().find_map(|k| text.strip_prefix(k))
        {
            text = after;
        } else {
            break;
        }
    }
    let name_end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    let (name, after) = text.split_at(name_end);
    let after = after.trim_start();
    let body = match after.chars().next() {
        Some(open @ ('{' | '(')) => {
            let close = if open == '{' { '}' } else { ')' };
            let inner = &after[1..];
            closing(inner, open, close).map_or("", |end| &inner[..end])
        }
        _ => "",
    };
    (name, body)
}

/// How a format string or argument list refers to each source field: `source` or `0`.
fn source_fields(body: &str) -> Vec<String> {
    let code: Vec<&str> =
        body.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
    let code = code.join("\n");
    let mut sources = Vec::new();
    for (index, field) in top_level(&code).into_iter().enumerate() {
        let marked = field.contains("#[source]") || field.contains("#[from]");
        let declaration = strip_attributes(field);
        let declaration = declaration.strip_prefix("pub ").unwrap_or(declaration);
        let name_end = declaration
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(declaration.len());
        let (name, after) = declaration.split_at(name_end);
        let after = after.trim_start();
        let named = after.starts_with(':') && !after.starts_with("::");
        match (named, marked) {
            (true, _) if marked || name == "source" => sources.push(name.to_owned()),
            (false, true) => sources.push(index.to_string()),
            _ => {}
        }
    }
    sources
}

fn strip_attributes(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        match text.strip_prefix("#[") {
            Some(attribute) => {
                let end = closing(attribute, '[', ']').unwrap_or(attribute.len());
                text = &attribute[(end + 1).min(attribute.len())..];
            }
            None => return text,
        }
    }
}

/// Whether the attribute's format string or arguments show `field`.
fn shows(message: &str, field: &str) -> bool {
    let in_braces =
        ["}", ":", "."].iter().any(|after| message.contains(&format!("{{{field}{after}")));
    let arguments = message.rfind('"').map_or("", |quote| &message[quote + 1..]);
    let in_arguments =
        arguments.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|word| word == field);
    in_braces || in_arguments
}

/// Splits at commas outside any brackets.
fn top_level(body: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in body.char_indices() {
        match c {
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !body[start..].trim().is_empty() {
        parts.push(&body[start..]);
    }
    parts
}

/// The index of the bracket closing an already opened `open`, skipping string literals.
fn closing(text: &str, open: char, close: char) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (1, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            _ if c == open => depth += 1,
            _ if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}
