//! Turning `toml` byte spans into what a person can use: 1-based `line:col`, and the
//! dotted field path (`egress.allow[0].ports[1]`) at a byte offset.
//!
//! The path lookup exists because serde errors raised inside `toml` (unknown keys, wrong
//! value types) carry a span but not the field they concern.

use std::cell::Cell;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::ManifestError;

/// Maps byte offsets of one source text to 1-based line and column.
pub(crate) struct Locator<'a> {
    src: &'a str,
    origin: &'a str,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
    /// The line of the last lookup: callers mostly ask in text order (a rule after
    /// another), so the next answer is usually a few lines on.
    last_line: Cell<usize>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(src: &'a str, origin: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            src,
            origin,
            line_starts,
            last_line: Cell::new(1),
        }
    }

    /// 1-based (line, column) of a byte offset. Columns count characters so that they match
    /// what editors show; offsets past the end or inside a character are clamped.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_of(offset);
        let start = self.line_starts[line - 1];
        let col = self.src[start..offset].chars().count() + 1;
        (line, col)
    }

    /// The 1-based line holding `offset` (at most the text's length): one a few lines from
    /// the last one found, else a binary search.
    fn line_of(&self, offset: usize) -> usize {
        const NEAR: usize = 8;
        let starts = &self.line_starts;
        // Line `l` holds `offset` when starts[l - 1] <= offset < starts[l] (or l is last).
        let holds = |l: usize| {
            starts.get(l - 1).is_some_and(|&s| s <= offset)
                && starts.get(l).is_none_or(|&next| offset < next)
        };
        // Rules are asked for in order, a domain rule's `domain` value before its header.
        let from = self.last_line.get().saturating_sub(NEAR).max(1);
        let line = (from..from + 2 * NEAR)
            .find(|&l| holds(l))
            // `line_starts[0] == 0`, so the partition point is at least 1.
            .unwrap_or_else(|| starts.partition_point(|&start| start <= offset));
        self.last_line.set(line);
        line
    }

    /// An error at the start of `span`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        let (line, col) = self.line_col(span.start);
        ManifestError {
            origin: self.origin.to_owned(),
            line,
            col,
            path: path.into(),
            message: message.into(),
        }
    }

    /// Converts an error raised by `toml` (syntax or serde), naming the field it concerns
    /// when the text parses far enough to tell.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ManifestError {
        let span = err.span().unwrap_or(0..0);
        let path = path_at(self.src, span.start).unwrap_or_default();
        self.error(span, path, err.message().trim_end())
    }
}

/// The dotted path of the key or value at byte `offset`, or `None` when the text does not
/// parse as TOML or nothing is there.
pub(crate) fn path_at(src: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(src).ok()?;
    find_in_table(root.get_ref(), offset, "")
}

fn find_in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if covers(key.span(), offset) {
            return Some(path);
        }
        if let Some(found) = find_in_value(value, offset, &path) {
            return Some(found);
        }
    }
    None
}

/// Children are searched before the value's own span because the span of a `[table]` or
/// `[[array.entry]]` is only its header, while its keys sit elsewhere in the text.
fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &str) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, offset, path),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_in_value(item, offset, &format!("{path}[{i}]"))),
        _ => None,
    };
    inner.or_else(|| covers(value.span(), offset).then(|| path.to_owned()))
}

fn covers(span: Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let src = "a = 1\nné = \"x\"\n";
        let loc = Locator::new(src, "t");
        assert_eq!(loc.line_col(0), (1, 1));
        assert_eq!(loc.line_col(4), (1, 5));
        assert_eq!(loc.line_col(6), (2, 1));
        // `=` after the two-byte `é` is byte 10 but character column 4.
        assert_eq!(loc.line_col(10), (2, 4));
        // Inside `é` and past the end are clamped rather than panicking.
        assert_eq!(loc.line_col(8), (2, 2));
        assert_eq!(loc.line_col(999), (3, 1));
    }

    #[test]
    fn line_col_agrees_with_counting_in_any_order() {
        let src = "a\n\nbc\nd\n\n\n\n\n\n\n\n\n\n\nlast";
        let count = |offset: usize| {
            let before = &src[..offset.min(src.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, col)
        };
        let loc = Locator::new(src, "t");
        let forward: Vec<usize> = (0..=src.len() + 2).collect();
        let mixed = [30, 0, 5, 4, 31, 2, 19, 18, 3, 1];
        for offset in forward.iter().chain(&mixed) {
            assert_eq!(loc.line_col(*offset), count(*offset), "offset {offset}");
        }
    }

    #[test]
    fn path_at_finds_keys_values_and_array_tables() {
        let src = "[bottle]\nname = \"x\"\n[[egress.allow]]\ncidr = \"a\"\n\
                   [[egress.allow]]\nports = [1, 2]\n";
        let at = |needle: &str| path_at(src, src.rfind(needle).unwrap());
        assert_eq!(at("name").as_deref(), Some("bottle.name"));
        assert_eq!(at("\"x\"").as_deref(), Some("bottle.name"));
        assert_eq!(at("cidr").as_deref(), Some("egress.allow[0].cidr"));
        assert_eq!(at("2]").as_deref(), Some("egress.allow[1].ports[1]"));
        assert_eq!(path_at("[oops", 0), None);
    }
}
