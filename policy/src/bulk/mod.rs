//! A faster way through large manifests, with the same result as `toml` alone.
//!
//! A manifest of 100 000 prefixes per family is some 200 000 `[[egress.allow]]` entries,
//! and `toml` builds a tree of spanned tables for all of them before serde reads it: most
//! of `cork check`'s time and half a gigabyte at that size. Nearly all such entries are
//! plain (`cidr`, `ports`, perhaps `proto`), so [`read`] takes those out of the text after
//! one pass over `toml_parser`'s events (`scan.rs`), reads the rest of the text, blanked
//! where they were (so every offset stays), with `toml`, and puts the entries back in
//! order. The result is the [`RawManifest`] that `toml` would have given.
//!
//! The bulk reader only ever answers for texts it fully understands: for a TOML error, an
//! entry that is not plain, or a layout where taking entries out could change what the rest
//! means, it returns `None`, and `parse_manifest` reads the whole text with `toml`, which
//! then reports errors exactly as it always did.

mod scan;
#[cfg(test)]
mod tests;

use toml::Spanned;

use crate::schema::{RawEgress, RawManifest, RawRule};

/// Texts shorter than this go straight to `toml`: they take it a few milliseconds at most,
/// and a second reader has nothing to win there.
pub(crate) const MIN_BULK_LEN: usize = 256 * 1024;

/// The manifest `toml` would read from `src`, read faster; `None` when `src` is short or
/// not a text this reader answers for (see the module docs).
pub(crate) fn read(src: &str) -> Option<RawManifest> {
    if src.len() < MIN_BULK_LEN {
        return None;
    }
    read_any(src)
}

/// [`read`] whatever the length of `src`.
pub(crate) fn read_any(src: &str) -> Option<RawManifest> {
    let plain = scan::plain_entries(src)?;
    if plain.bytes.is_empty() {
        return None;
    }
    let mut rest = src.as_bytes().to_vec();
    for bytes in &plain.bytes {
        rest.get_mut(bytes.clone())?.fill(b' ');
    }
    // Whole entries became spaces, so the text is still UTF-8 (checked all the same).
    let rest = String::from_utf8(rest).ok()?;
    let mut raw: RawManifest = toml::from_str(&rest).ok()?;
    let egress = raw.egress.get_or_insert(RawEgress {
        allow: None,
        deny: None,
        ask: None,
    });
    egress.allow = merged(egress.allow.take(), plain.allow);
    egress.deny = merged(egress.deny.take(), plain.deny);
    Some(raw)
}

/// The entries `toml` read and the ones taken out, in text order (both lists already are):
/// an entry's span starts at its header, and the headers' order is the list's.
fn merged(
    read: Option<Vec<Spanned<RawRule>>>,
    taken: Vec<Spanned<RawRule>>,
) -> Option<Vec<Spanned<RawRule>>> {
    let Some(read) = read else {
        return (!taken.is_empty()).then_some(taken);
    };
    let mut out = Vec::with_capacity(read.len() + taken.len());
    let mut read = read.into_iter().peekable();
    let mut taken = taken.into_iter().peekable();
    loop {
        let next = match (read.peek(), taken.peek()) {
            (Some(r), Some(t)) if r.span().start < t.span().start => read.next(),
            (Some(_), Some(_)) | (None, Some(_)) => taken.next(),
            (Some(_), None) => read.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    Some(out)
}
