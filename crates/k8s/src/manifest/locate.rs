//! Finding the line of a field (`spec.ports[1].nodePort`) in a block-style YAML document, so an
//! error can point at the line to fix rather than at the start of the object.
//!
//! Best effort by design: it follows indentation, which is how Kubernetes manifests are written.
//! Flow style (`ports: [{…}]`) or block scalars may stop the walk early; the answer is then the
//! deepest line found, and `None` only when not even the first key was found.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use super::error::Location;
use super::parse::{Format, is_separator};

/// One segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `spec.ports[1].nodePort` → Key(spec), Key(ports), Index(1), Key(nodePort).
/// Bracketed non-numbers are keys: `metadata.labels[kubernetes.io/service-name]`.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !current.is_empty() {
                    out.push(Segment::Key(std::mem::take(&mut current)));
                }
            }
            '[' => {
                if !current.is_empty() {
                    out.push(Segment::Key(std::mem::take(&mut current)));
                }
                let inside: String = chars.by_ref().take_while(|c| *c != ']').collect();
                match inside.parse::<usize>() {
                    Ok(index) => out.push(Segment::Index(index)),
                    Err(_) => out.push(Segment::Key(inside)),
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(Segment::Key(current));
    }
    out
}

/// A line with content, as the walk sees it.
#[derive(Debug)]
struct Line<'a> {
    /// 0-based offset from the start of the text.
    number: usize,
    /// Column of the first character (of the `-` for sequence items).
    indent: usize,
    /// Whether the line starts a sequence item.
    dash: bool,
    /// Column where the content after `- ` starts (equals `indent` without a dash).
    key_indent: usize,
    /// The content after any `- `.
    text: &'a str,
}

fn content_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        if is_separator(raw) {
            break;
        }
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let (dash, key_indent, text) = match trimmed.strip_prefix('-') {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                let after = rest.trim_start();
                (true, indent + 1 + (rest.len() - after.len()), after)
            }
            _ => (false, indent, trimmed),
        };
        lines.push(Line { number, indent, dash, key_indent, text });
    }
    lines
}

fn has_key(text: &str, key: &str) -> bool {
    [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")].iter().any(|prefix| {
        text.strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

/// 0-based line offset of `path` in `text` (one YAML document), or of the deepest part of it
/// that was found.
pub(crate) fn locate_in_text(text: &str, path: &str) -> Option<usize> {
    let lines = content_lines(text);
    // The lines that may hold the next segment: a range of `lines`.
    let (mut start, mut end) = (0, lines.len());
    let mut found = None;
    for segment in segments(path) {
        let region = &lines[start..end];
        match segment {
            Segment::Key(key) => {
                let Some(level) = region.iter().map(|l| l.key_indent).min() else { break };
                let Some(position) =
                    region.iter().position(|l| l.key_indent == level && has_key(l.text, &key))
                else {
                    break;
                };
                let line = &region[position];
                found = Some(line.number);
                let children_end = region[position + 1..]
                    .iter()
                    .position(|l| {
                        l.key_indent <= line.key_indent && !(l.dash && l.indent >= line.key_indent)
                    })
                    .map_or(region.len(), |p| position + 1 + p);
                // The value may sit on the same line (`- name: http` holds `name`); children
                // start on the next line either way.
                (start, end) = (start + position + 1, start + children_end);
            }
            Segment::Index(index) => {
                let Some(level) = region.iter().filter(|l| l.dash).map(|l| l.indent).min() else {
                    break;
                };
                let items: Vec<usize> = region
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.dash && l.indent == level)
                    .map(|(i, _)| i)
                    .collect();
                let Some(&item) = items.get(index) else { break };
                let item_end = items.get(index + 1).copied().unwrap_or(region.len());
                found = Some(region[item].number);
                // The item's own line holds its first key, so it stays in the region.
                (start, end) = (start + item, start + item_end);
            }
        }
    }
    found
}

/// 1-based file line of `field` in the document at `location`, read from the file now.
/// `None` for JSON, for items of a `kind: List`, or when the field cannot be found.
pub fn field_line(location: &Location, field: &str) -> Option<usize> {
    FieldLines::default().line_of(location, field)
}

/// Finds the lines of many fields, reading each file once and indexing its line starts, so
/// pointing at N fields costs the documents they are in, not N times their files (a 10 MB file
/// with 32,000 findings took two minutes when every lookup re-read and re-scanned it).
#[derive(Debug, Default)]
pub struct FieldLines {
    /// File → its text and the byte offset of each line's start (`None`: unreadable).
    files: HashMap<PathBuf, Option<(String, Vec<usize>)>>,
}

impl FieldLines {
    /// 1-based file line of `field` in the document at `location`: as [`field_line`].
    pub fn line_of(&mut self, location: &Location, field: &str) -> Option<usize> {
        if location.item.is_some() || Format::of(&location.file) != Some(Format::Yaml) {
            return None;
        }
        let file = self.files.entry(location.file.to_path_buf()).or_insert_with(|| {
            let text = fs::read_to_string(&location.file).ok()?;
            let starts = std::iter::once(0)
                .chain(text.match_indices('\n').map(|(position, _)| position + 1))
                .collect();
            Some((text, starts))
        });
        let (text, starts) = file.as_ref()?;
        let start = *starts.get(location.line.checked_sub(1)?)?;
        let document = text.get(start..)?;
        locate_in_text(document, field).map(|offset| location.line + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    kubernetes.io/service-name: web
spec:
  type: NodePort
  # a comment
  ports:
  - name: http
    port: 80
    nodePort: 30080
  - name: https
    port: 443
    nodePort: 8443
  externalIPs:
    - 10.0.0.1
    - 10.0.0.x
  selector:
    app: web
---
kind: Other
";

    #[test]
    fn finds_fields_by_path() {
        // (path, expected 1-based line)
        let cases: &[(&str, Option<usize>)] = &[
            ("spec", Some(7)),
            ("spec.type", Some(8)),
            ("spec.ports", Some(10)),
            ("spec.ports[0]", Some(11)),
            ("spec.ports[0].name", Some(11)),
            ("spec.ports[1].name", Some(14)),
            ("spec.ports[1].nodePort", Some(16)),
            ("spec.ports[0].nodePort", Some(13)),
            ("spec.externalIPs[1]", Some(19)),
            ("spec.selector.app", Some(21)),
            ("metadata.labels[kubernetes.io/service-name]", Some(6)),
            // Deepest part found: spec.ports[1] exists, the field does not.
            ("spec.ports[1].targetPort", Some(14)),
            ("spec.ports[5]", Some(10)),
            ("status", None),
        ];
        for (path, expected) in cases {
            assert_eq!(locate_in_text(SERVICE, path).map(|l| l + 1), *expected, "{path}");
        }
    }

    #[test]
    fn splits_paths_into_keys_and_indexes() {
        assert_eq!(
            segments("spec.ports[1].nodePort"),
            vec![
                Segment::Key("spec".into()),
                Segment::Key("ports".into()),
                Segment::Index(1),
                Segment::Key("nodePort".into())
            ]
        );
        assert_eq!(
            segments("metadata.labels[kubernetes.io/service-name]"),
            vec![
                Segment::Key("metadata".into()),
                Segment::Key("labels".into()),
                Segment::Key("kubernetes.io/service-name".into())
            ]
        );
    }

    #[test]
    fn flow_style_stops_at_the_deepest_block_key() {
        let text = "spec:\n  ports: [{name: http, port: 70000}]\n";
        assert_eq!(locate_in_text(text, "spec.ports[0].port"), Some(1));
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn field_lines_read_each_file_once_and_agree_with_a_fresh_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services.yaml");
        let documents = 50;
        // Each document: SERVICE's 21 lines of the Service, then its separator line.
        let text = SERVICE.replace("---\nkind: Other\n", "---\n").repeat(documents);
        fs::write(&file, &text).unwrap();
        let location = |document: usize| Location {
            file: file.as_path().into(),
            document: document + 1,
            line: document * 22 + 1,
            item: None,
        };
        let mut lines = FieldLines::default();
        let expected: Vec<Option<usize>> =
            (0..documents).map(|d| field_line(&location(d), "spec.ports[1].nodePort")).collect();
        assert_eq!(expected[1], Some(22 + 16));
        let first: Vec<Option<usize>> =
            (0..documents).map(|d| lines.line_of(&location(d), "spec.ports[1].nodePort")).collect();
        assert_eq!(first, expected);
        // Answered from what was read once: the file is not read again.
        fs::remove_file(&file).unwrap();
        assert_eq!(lines.line_of(&location(7), "spec.ports[1].nodePort"), expected[7]);
        assert_eq!(field_line(&location(7), "spec.ports[1].nodePort"), None);
    }
}
