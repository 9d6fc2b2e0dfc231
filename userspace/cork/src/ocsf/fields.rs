//! The cork event's fields as the mapping consumes them: each mapper *takes* the fields it
//! gives an OCSF home, and what is left at the end becomes `unmapped` — so a field is
//! either mapped or kept, never lost. A field is taken only when its value has the
//! expected shape (a string where a string is meant, an address that parses...); one
//! that does not stays for `unmapped`, as it was.

use std::net::{IpAddr, SocketAddr};
use std::time::UNIX_EPOCH;

use serde_json::{Map, Value};

use super::OcsfError;

pub(crate) struct Fields(Map<String, Value>);

impl Fields {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Fields(map)
    }

    /// Whether `key` is there with a non-null value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| !v.is_null())
    }

    /// The value at `key`, left in place.
    pub(crate) fn peek(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Drops `key`: the caller mapped it already.
    pub(crate) fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// The string at `key`, left in place.
    pub(crate) fn peek_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Takes `key` when `read` accepts its value. A null is taken as absent.
    fn take_with<T>(&mut self, key: &str, read: impl FnOnce(&Value) -> Option<T>) -> Option<T> {
        let value = self.0.get(key)?;
        if value.is_null() {
            self.0.remove(key);
            return None;
        }
        let got = read(value)?;
        self.0.remove(key);
        Some(got)
    }

    pub(crate) fn str(&mut self, key: &str) -> Option<String> {
        self.take_with(key, |v| v.as_str().map(str::to_owned))
    }

    /// Takes `key` only when it is one of `words`.
    pub(crate) fn word(&mut self, key: &str, words: &[&'static str]) -> Option<&'static str> {
        self.take_with(key, |v| {
            let s = v.as_str()?;
            words.iter().copied().find(|w| *w == s)
        })
    }

    pub(crate) fn u64(&mut self, key: &str) -> Option<u64> {
        self.take_with(key, Value::as_u64)
    }

    pub(crate) fn port(&mut self, key: &str) -> Option<u16> {
        self.take_with(key, |v| v.as_u64().and_then(|p| u16::try_from(p).ok()))
    }

    pub(crate) fn f64(&mut self, key: &str) -> Option<f64> {
        self.take_with(key, Value::as_f64)
    }

    pub(crate) fn ip(&mut self, key: &str) -> Option<IpAddr> {
        self.take_with(key, |v| v.as_str()?.parse().ok())
    }

    pub(crate) fn sockaddr(&mut self, key: &str) -> Option<SocketAddr> {
        self.take_with(key, |v| v.as_str()?.parse().ok())
    }

    /// An array of strings (all of them strings, else it stays).
    pub(crate) fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        self.take_with(key, |v| {
            v.as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    }

    /// What no mapper took, nulls left out (a null says "none", which the OCSF event says
    /// by leaving the attribute out).
    pub(crate) fn into_unmapped(self) -> Map<String, Value> {
        self.0.into_iter().filter(|(_, v)| !v.is_null()).collect()
    }
}

/// The fields every audit line starts (and, in a file, ends) with.
pub(crate) struct Head {
    /// `ts`, as written.
    pub ts: String,
    /// `ts` in milliseconds since the epoch (OCSF `time`).
    pub time_ms: u64,
    pub bottle: Option<String>,
    pub layer: Option<String>,
    pub event: Option<String>,
    /// The line's hash-chain value (`--audit-log` files only).
    pub chain: Option<String>,
}

impl Head {
    pub(crate) fn take(f: &mut Fields) -> Result<Head, OcsfError> {
        let time = f
            .peek_str("ts")
            .and_then(|ts| humantime::parse_rfc3339(ts).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let Some(time) = time else {
            let found = f.0.get("ts").map_or("none".into(), Value::to_string);
            return Err(OcsfError::NoTime { found });
        };
        Ok(Head {
            ts: f.str("ts").unwrap_or_default(),
            time_ms: u64::try_from(time.as_millis()).unwrap_or(u64::MAX),
            bottle: f.str("bottle"),
            layer: f.str("layer"),
            event: f.str("event"),
            chain: f.str("chain"),
        })
    }
}
