//! Reading cork's audit log (one JSON object per line) and finding events in it.
//!
//! Queries are JSON objects whose fields must all be equal in the event:
//! `audit.find(json!({"verdict": "deny", "dst": "198.51.100.10", "dport": 443}))`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The events of one audit log.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// Every event, in file order.
    pub events: Vec<Value>,
}

impl Audit {
    /// Reads a JSON-lines log; an absent file is an error (cork run writes it), a line
    /// that is not a JSON object too.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read audit log {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parse audit log {}", path.display()))
    }

    /// Waits until the log at `path` (which may not exist yet) has an event matching
    /// `query`, and returns the log as it was then; a timeout is an error showing it.
    /// Only a complete line counts: the writer may be in the middle of one.
    pub fn wait_for(path: &Path, query: Value, timeout: std::time::Duration) -> Result<Self> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
            let audit = Self::parse(complete)
                .with_context(|| format!("parse audit log {}", path.display()))?;
            if audit.has(query.clone()) {
                return Ok(audit);
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "no audit event matching {query} in {} after {timeout:?}\n{}",
                    path.display(),
                    audit.dump()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Parses JSON lines (blank lines skipped).
    pub fn parse(text: &str) -> Result<Self> {
        let mut events = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("line {}: {line}", i + 1))?;
            if !v.is_object() {
                bail!("line {}: not a JSON object: {line}", i + 1);
            }
            events.push(v);
        }
        Ok(Self { events })
    }

    /// Kernel verdict events.
    pub fn verdicts(&self) -> Vec<&Value> {
        self.find(serde_json::json!({"event": "verdict"}))
    }

    /// How many decisions `lines` stand for: a summary line (a flow's counted allows)
    /// for its `count`, any other line for itself.
    pub fn stood_for(lines: &[&Value]) -> u64 {
        lines.iter().map(|e| e["count"].as_u64().unwrap_or(1)).sum()
    }

    /// Events whose fields include every field of `query` with an equal value.
    pub fn find(&self, query: Value) -> Vec<&Value> {
        self.events.iter().filter(|e| matches(e, &query)).collect()
    }

    /// Whether any event matches.
    pub fn has(&self, query: Value) -> bool {
        !self.find(query).is_empty()
    }

    /// The first matching event, or an error listing the whole log (for test messages).
    pub fn expect(&self, query: Value) -> Result<&Value> {
        match self.find(query.clone()).first() {
            Some(e) => Ok(e),
            None => bail!("no audit event matches {query}\n{}", self.dump()),
        }
    }

    /// Errors if any event matches.
    pub fn expect_none(&self, query: Value) -> Result<()> {
        let found = self.find(query.clone());
        if !found.is_empty() {
            bail!("unexpected audit event(s) matching {query}: {found:?}");
        }
        Ok(())
    }

    /// Sum of `lost` over loss events.
    pub fn lost(&self) -> u64 {
        self.find(serde_json::json!({"event": "loss"}))
            .iter()
            .filter_map(|e| e.get("lost")?.as_u64())
            .sum()
    }

    /// Every event, one per line.
    pub fn dump(&self) -> String {
        let mut s = format!("--- audit log ({} events) ---\n", self.events.len());
        for e in &self.events {
            s.push_str(&e.to_string());
            s.push('\n');
        }
        s
    }

    /// One human line per verdict event (for the demo).
    pub fn pretty(&self) -> Vec<String> {
        let f = |e: &Value, k: &str| match e.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(v) => v.to_string(),
        };
        self.events
            .iter()
            .map(|e| {
                if f(e, "event") == "verdict" {
                    let domain = match f(e, "domain").as_str() {
                        "-" => String::new(),
                        d => format!(" [{d}]"),
                    };
                    format!(
                        "{:<5} {:<10} {:<6} {:>22} port {:<5} {:<18} rule {:<16} ({} pid {}){domain}",
                        f(e, "verdict"),
                        f(e, "hook"),
                        f(e, "proto"),
                        f(e, "dst"),
                        f(e, "dport"),
                        f(e, "reason"),
                        f(e, "rule"),
                        f(e, "comm"),
                        f(e, "pid")
                    )
                } else if f(e, "layer") == "dns" {
                    format!(
                        "dns   {:<5} {:<5} {:<28} {:<9} {:<14} rule {:<16} answers {}",
                        f(e, "verdict"),
                        f(e, "qtype"),
                        f(e, "name"),
                        f(e, "rcode"),
                        f(e, "reason"),
                        f(e, "rule"),
                        f(e, "answers")
                    )
                } else if f(e, "layer") == "proxy" {
                    format!(
                        "proxy {:<5} {:<10} {:<6} {:<18} {:<14} status {:<4} {:<16} detectors {} credentials {}",
                        f(e, "verdict"),
                        f(e, "event"),
                        f(e, "method"),
                        f(e, "path"),
                        f(e, "host"),
                        f(e, "status"),
                        f(e, "reason"),
                        f(e, "detectors"),
                        f(e, "credentials")
                    )
                } else {
                    e.to_string()
                }
            })
            .collect()
    }
}

fn matches(event: &Value, query: &Value) -> bool {
    match query {
        Value::Object(q) => q.iter().all(|(k, want)| event.get(k) == Some(want)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_by_subset_of_fields() {
        let a = Audit::parse(concat!(
            r#"{"event":"verdict","verdict":"deny","dst":"198.51.100.10","dport":443,"reason":"default_deny"}"#,
            "\n\n",
            r#"{"layer":"audit","event":"loss","lost":3}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(a.verdicts().len(), 1);
        assert!(a.has(json!({"verdict": "deny", "dport": 443})));
        assert!(!a.has(json!({"verdict": "allow"})));
        assert_eq!(a.lost(), 3);
        assert!(Audit::parse("[1]").is_err());
    }
}
