//! `cork dlp scan FILE|-`: the proxy's DLP scanner run offline over a file or standard
//! input, so a user sees what would be blocked before running an agent. Reports JSON;
//! a finding names its detector and place, and shows at most the first four characters of
//! what matched (never a whole secret).

use std::io::{self, Read};
use std::path::Path;

use cork_dlp::{Finding, Scanner};
use serde::Serialize;

/// Bytes read per feed.
const CHUNK: usize = 64 << 10;

/// What `cork dlp scan` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file scanned, `-` for standard input.
    pub source: String,
    pub bytes: u64,
    pub findings: Vec<ReportedFinding>,
}

#[derive(Debug, Serialize)]
pub struct ReportedFinding {
    /// Detector id (`known-secret:<name>` never appears: no credentials are loaded).
    pub detector: String,
    pub title: String,
    pub family: &'static str,
    pub severity: &'static str,
    /// What the manifest's `[dlp]` settings would do with it: `block`, `redact` or `log`
    /// (findings of detectors turned `off` are left out).
    pub action: &'static str,
    /// Byte offset and length in the input.
    pub offset: u64,
    pub len: usize,
    /// 1-based line and column (in bytes) of the first matched byte.
    pub line: u64,
    pub column: u64,
    /// The first characters of the match and its length, e.g. `ghp_… (40 bytes)`.
    pub preview: String,
}

/// Scans `input` with `scanner`; `action` says what the policy would do per detector.
pub fn scan(
    source: &str,
    mut input: impl Read,
    scanner: &Scanner,
    action: impl Fn(&str) -> &'static str,
) -> io::Result<Report> {
    let mut stream = scanner.stream();
    let mut lines = Lines::default();
    // Bytes from `kept_from` on, for previews of findings not yet reported.
    let mut kept: Vec<u8> = Vec::new();
    let mut kept_from = 0u64;
    let mut found: Vec<(Finding, String)> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines.feed(&buf[..n]);
        kept.extend_from_slice(&buf[..n]);
        for f in stream.feed(&buf[..n]) {
            let p = preview(&kept, kept_from, &f);
            found.push((f, p));
        }
        // Keep what findings not yet reported can still start in.
        let keep = stream.settled().min(stream.position());
        if keep > kept_from {
            let drop = usize::try_from(keep - kept_from)
                .unwrap_or(kept.len())
                .min(kept.len());
            kept.drain(..drop);
            kept_from += drop as u64;
        }
    }
    let bytes = stream.position();
    for f in stream.finish() {
        let p = preview(&kept, kept_from, &f);
        found.push((f, p));
    }
    found.sort_by_key(|(f, _)| (f.start, f.len));
    let findings = found
        .into_iter()
        // `"off"` in the manifest: not a finding.
        .filter(|(f, _)| action(&f.detector) != "off")
        .map(|(f, preview)| {
            let info = scanner.detector(&f.detector);
            let (line, column) = lines.locate(f.start);
            ReportedFinding {
                title: info.map_or_else(|| f.detector.clone(), |d| d.title.to_string()),
                family: info.map_or("custom", |d| d.family.as_str()),
                severity: scanner.severity(&f.detector).as_str(),
                action: action(&f.detector),
                offset: f.start,
                len: f.len,
                line,
                column,
                preview,
                detector: f.detector,
            }
        })
        .collect();
    Ok(Report {
        source: source.to_string(),
        bytes,
        findings,
    })
}

/// Reads FILE, or standard input for `-`.
pub fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(io::stdin().lock()))
    } else {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// At most four characters of the match (none if it is short), then its length.
fn preview(kept: &[u8], kept_from: u64, f: &Finding) -> String {
    let shown = if f.len >= 16 { 4 } else { 0 };
    let start = usize::try_from(f.start.saturating_sub(kept_from)).unwrap_or(usize::MAX);
    let head: String = kept
        .get(start..start.saturating_add(shown))
        .unwrap_or_default()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect();
    format!("{head}… ({} bytes)", f.len)
}

/// Line starts seen so far, to turn offsets into line and column.
#[derive(Default)]
struct Lines {
    /// Offsets just past each `\n`.
    starts: Vec<u64>,
    seen: u64,
}

impl Lines {
    fn feed(&mut self, chunk: &[u8]) {
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                self.starts.push(self.seen + i as u64 + 1);
            }
        }
        self.seen += chunk.len() as u64;
    }

    fn locate(&self, offset: u64) -> (u64, u64) {
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = if line == 0 { 0 } else { self.starts[line - 1] };
        (line as u64 + 1, offset - start + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_place_and_never_the_secret() {
        let sc = Scanner::new(&cork_dlp::Config::default()).expect("scanner");
        let key = "AKIAZ7QX2J4K5L6M7N3P";
        let text = format!("line one\n  aws = {key}\n");
        let r = scan("t", text.as_bytes(), &sc, |_| "block").expect("scan");
        assert_eq!(r.findings.len(), 1, "{r:?}");
        let f = &r.findings[0];
        assert_eq!(
            (f.detector.as_str(), f.line, f.column),
            ("aws-access-key-id", 2, 9)
        );
        assert_eq!(f.severity, "critical");
        let json = serde_json::to_string(&r).expect("json");
        assert!(!json.contains(key), "{json}");
        assert!(json.contains("AKIA… (20 bytes)"), "{json}");
    }

    #[test]
    fn clean_input_has_no_findings() {
        let sc = Scanner::new(&cork_dlp::Config::default()).expect("scanner");
        let r = scan(
            "t",
            &b"fn main() { println!(\"hi\"); }\n"[..],
            &sc,
            |_| "block",
        )
        .expect("scan");
        assert!(r.findings.is_empty());
        assert_eq!(r.bytes, 30);
    }
}
