//! One output convention for every command that prints state: `-o table|wide|json|yaml`, like
//! kubectl. JSON and YAML keys are camelCase; docs/output.md lists each command's document.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;

/// What `-o` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns (or the command's text report).
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// A JSON document (camelCase keys; streams: one object per line).
    Json,
    /// The same document as YAML (streams: one document per event, `---` between them).
    Yaml,
}

/// `-o/--output FORMAT`, and the old `--json` (hidden; an alias of `-o json` for one release).
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// Output format: table, wide (more columns), json or yaml (documents: docs/output.md).
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT", default_value_t = Format::Table)]
    output: Format,

    /// Same as `-o json` (deprecated).
    #[arg(long, hide = true)]
    json: bool,
}

impl OutputArgs {
    /// The format asked for (`--json` counts as `-o json`).
    pub(crate) fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output }
    }

    /// JSON or YAML: a document for programs, so no chatter on standard output.
    pub(crate) fn is_document(&self) -> bool {
        matches!(self.format(), Format::Json | Format::Yaml)
    }

    /// Prints `doc` as JSON or YAML, or the text `render(wide)` makes for table and wide.
    pub(crate) fn print<T: Serialize + ?Sized>(
        &self,
        doc: &T,
        render: impl FnOnce(bool) -> String,
    ) -> anyhow::Result<()> {
        write_out(&self.encode(doc, render, false)?)
    }

    /// Prints one document of a stream (`monitor`, `services --watch`): JSON on one line, YAML
    /// as a document of its own, or the line(s) `render(wide)` makes.
    pub(crate) fn print_item<T: Serialize + ?Sized>(
        &self,
        doc: &T,
        render: impl FnOnce(bool) -> String,
    ) -> anyhow::Result<()> {
        write_out(&self.encode(doc, render, true)?)
    }

    fn encode<T: Serialize + ?Sized>(
        &self,
        doc: &T,
        render: impl FnOnce(bool) -> String,
        stream: bool,
    ) -> anyhow::Result<String> {
        Ok(match (self.format(), stream) {
            (Format::Table, _) => render(false),
            (Format::Wide, _) => render(true),
            (Format::Json, false) => {
                serde_json::to_string_pretty(doc).context("encoding JSON")? + "\n"
            }
            (Format::Json, true) => serde_json::to_string(doc).context("encoding JSON")? + "\n",
            (Format::Yaml, stream) => {
                let separator = if stream { "---\n" } else { "" };
                separator.to_owned() + &serde_norway::to_string(doc).context("encoding YAML")?
            }
        })
    }
}

/// Writes and flushes (streams are read line by line by other programs).
fn write_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).context("writing to standard output")?;
    stdout.flush().context("writing to standard output")
}

/// `writeln!` into a `String`, which cannot fail.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = ::std::fmt::Write::write_fmt(&mut $out, format_args!("{}\n", format_args!($($arg)*)));
    }};
}
pub(crate) use say;

/// A kubectl-style table: upper-case headers, no borders, columns three spaces apart.
#[derive(Debug)]
pub(crate) struct Table(comfy_table::Table);

impl Table {
    pub(crate) fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        table.set_header(headers.into_iter().map(|h| h.into()).collect::<Vec<String>>());
        for column in table.column_iter_mut() {
            column.set_padding((0, 3));
        }
        Self(table)
    }

    /// Right-aligns column `index` (counts and ids).
    pub(crate) fn align_right(&mut self, index: usize) -> &mut Self {
        if let Some(column) = self.0.column_mut(index) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
        self
    }

    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.0.add_row(cells.into_iter().map(|c| c.into()).collect::<Vec<String>>());
    }

    /// The table as text, one line per row, without trailing blanks.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for line in self.0.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_kubectl_layout() {
        let mut table = Table::new(["NAME", "PORT"]);
        table.align_right(1);
        table.row(["web", "80"]);
        table.row(["a-longer-name", "8080"]);
        assert_eq!(
            table.render(),
            "NAME            PORT\nweb               80\na-longer-name   8080\n"
        );
    }
}
