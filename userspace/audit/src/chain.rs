//! The audit log's hash chain: every line an audit *file* gets ends with
//! `"chain":"<hex>"`, the SHA-256 of the previous line's chain value (32 zero bytes before
//! the first line) followed by the line's own bytes without that field. Removing,
//! inserting, reordering or editing a line breaks the chain at that line, which
//! [`verify`] (`cork audit --verify FILE`) reports by line number. Appending to an
//! existing file continues its chain.
//!
//! What it cannot show: lines cut off the *end* of the file (compare the head [`verify`]
//! prints with the one the writer last reported), or a whole file rewritten with a fresh
//! chain by someone who can write it — the chain has no secret; keep a copy of the head
//! elsewhere (a SIEM, the journal) to anchor it.

use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::path::Path;

/// What a chained line ends with, before the hex digest and `"}`.
const FIELD: &[u8] = b",\"chain\":\"";
const HEX_LEN: usize = 64;
/// The chain value before the first line.
pub const GENESIS: [u8; 32] = [0; 32];

/// The chain value after `line` (one JSON object, no newline, no chain field), given the
/// value before it.
pub fn link(prev: &[u8; 32], line: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev);
    ctx.update(line);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Adds the chain field to `line` (one JSON object ending in `}`, no newline) and moves
/// `prev` on to its value.
pub fn seal(prev: &mut [u8; 32], line: &mut Vec<u8>) {
    *prev = link(prev, line);
    if line.last() == Some(&b'}') {
        line.pop();
    }
    line.extend_from_slice(FIELD);
    line.extend_from_slice(hex(prev).as_bytes());
    line.extend_from_slice(b"\"}");
}

/// Lowercase hex of a chain value (or any digest).
pub fn hex(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value {
        push_hex(&mut out, *b);
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(DIGITS[usize::from(b >> 4)]));
    out.push(char::from(DIGITS[usize::from(b & 0xf)]));
}

/// A chained line split into (the line as it was hashed, its chain value); `None` when
/// the line does not end with a chain field.
fn split(line: &[u8]) -> Option<(Vec<u8>, [u8; 32])> {
    let tail = FIELD.len() + HEX_LEN + 2;
    if line.len() < tail + 1 || !line.ends_with(b"\"}") {
        return None;
    }
    let at = line.len() - tail;
    if &line[at..at + FIELD.len()] != FIELD {
        return None;
    }
    let digits = &line[at + FIELD.len()..at + FIELD.len() + HEX_LEN];
    let mut value = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        value[i] = u8::from_str_radix(text, 16).ok()?;
    }
    let mut body = line[..at].to_vec();
    body.push(b'}');
    Some((body, value))
}

/// The chain value of the last line of the file at `path`, to continue its chain; the
/// genesis value for a missing or empty file. A file whose last line carries no chain
/// (written by something else) is refused: continuing would hide that.
pub fn head_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(GENESIS),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(GENESIS);
    }
    // An audit line is at most a few KiB; read the tail only.
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let text = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let last = text.rsplit(|&b| b == b'\n').next().unwrap_or(text);
    split(last).map(|(_, value)| value).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "its last line carries no chain value: it was not written by cork's audit \
             sink, or was edited; give cork a new audit log file",
        )
    })
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("line {line}: no chain value (not written by cork's audit sink, or edited)")]
    Unchained { line: usize },
    #[error(
        "line {line}: the chain breaks here — this line was edited, or a line before it was \
         removed, inserted or moved"
    )]
    Broken { line: usize },
    #[error("reading line {line}: {why}")]
    Read { line: usize, why: String },
}

/// An intact chain: how many lines, and the value after the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub lines: usize,
    pub head: [u8; 32],
}

/// Checks every line of `input` against the chain, from the genesis value.
pub fn verify(input: impl BufRead) -> Result<Verified, ChainError> {
    let mut prev = GENESIS;
    let mut n = 0;
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line.map_err(|e| ChainError::Read {
            line: i + 1,
            why: e.to_string(),
        })?;
        if line.is_empty() {
            continue;
        }
        let (body, value) = split(&line).ok_or(ChainError::Unchained { line: i + 1 })?;
        if link(&prev, &body) != value {
            return Err(ChainError::Broken { line: i + 1 });
        }
        prev = value;
        n += 1;
    }
    Ok(Verified {
        lines: n,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chained(lines: &[&str]) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        lines
            .iter()
            .map(|l| {
                let mut v = l.as_bytes().to_vec();
                seal(&mut prev, &mut v);
                v
            })
            .collect()
    }

    fn file(lines: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn sealed_lines_stay_json_and_verify() {
        let lines = chained(&[r#"{"a":1}"#, r#"{"b":"x"}"#, r#"{"c":[1,2]}"#]);
        for l in &lines {
            let v: serde_json::Value = serde_json::from_slice(l).expect("still JSON");
            assert_eq!(v["chain"].as_str().map(str::len), Some(64));
        }
        let ok = verify(&file(&lines)[..]).expect("intact");
        assert_eq!(ok.lines, 3);
        assert_eq!(split(&lines[2]).map(|(_, v)| v), Some(ok.head));
    }

    #[test]
    fn removal_insertion_reordering_and_edits_are_found() {
        let lines = chained(&[r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#, r#"{"d":4}"#]);
        let mut removed = lines.clone();
        removed.remove(1);
        assert_eq!(
            verify(&file(&removed)[..]),
            Err(ChainError::Broken { line: 2 })
        );
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(
            verify(&file(&swapped)[..]),
            Err(ChainError::Broken { line: 2 })
        );
        let mut edited = lines.clone();
        let text = String::from_utf8(edited[2].clone()).expect("utf8");
        edited[2] = text.replace("\"c\":3", "\"c\":4").into_bytes();
        assert_eq!(
            verify(&file(&edited)[..]),
            Err(ChainError::Broken { line: 3 })
        );
        let mut inserted = lines.clone();
        inserted.insert(3, br#"{"x":0}"#.to_vec());
        assert_eq!(
            verify(&file(&inserted)[..]),
            Err(ChainError::Unchained { line: 4 })
        );
        let mut forged = lines;
        forged.insert(3, chained(&[r#"{"x":0}"#]).remove(0));
        assert_eq!(
            verify(&file(&forged)[..]),
            Err(ChainError::Broken { line: 4 })
        );
    }

    #[test]
    fn a_file_continues_its_chain() {
        let dir = std::env::temp_dir().join(format!("cork-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        assert_eq!(head_of(&path).expect("missing is genesis"), GENESIS);
        let lines = chained(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        std::fs::write(&path, file(&lines)).expect("write");
        let head = head_of(&path).expect("head");
        assert_eq!(Some(head), split(&lines[1]).map(|(_, v)| v));
        std::fs::write(&path, b"{\"plain\":1}\n").expect("write");
        assert!(
            head_of(&path).is_err(),
            "an unchained file is not continued"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
