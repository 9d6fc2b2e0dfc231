//! `GET /v1/audit`'s query string — `bottle`, `verdict`, `since`, `follow` — parsed by
//! the daemon and built by `cork audit`, with one parser per parameter that both sides
//! use (the CLI checks its flags with them before it calls, so a bad flag is refused
//! the same way whether or not a daemon runs).

use std::time::{Duration, SystemTime};

use cork_audit::LineFilter;

/// The `verdict` values audit events carry (kernel, DNS and proxy alike).
pub const VERDICTS: &[&str] = &["allow", "deny"];

const PARAMS: &str = "bottle, verdict, since, follow";

/// A query the daemon cannot answer: the parameter, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("/v1/audit: {param}: {why}")]
    Bad { param: String, why: String },
    #[error("/v1/audit: unknown parameter {param:?} (known: {PARAMS})")]
    Unknown { param: String },
    #[error("/v1/audit: {param} is given twice")]
    Twice { param: String },
}

/// The lower bound of `since`: a span back from the moment the daemon answers, or a
/// point in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinceAt {
    Ago(Duration),
    At(SystemTime),
}

/// `since` as given (sent on as given) and as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub text: String,
    pub at: SinceAt,
}

impl Since {
    /// A humantime duration (`10m`, `2h`, `1h 30m`) or an RFC 3339 time with its zone
    /// (`2026-11-30T07:00:00Z`, `2026-11-30T08:00:00.5+01:00`).
    pub fn parse(text: &str) -> Result<Since, String> {
        let at = if let Ok(d) = humantime::parse_duration(text) {
            SinceAt::Ago(d)
        } else {
            SinceAt::At(parse_rfc3339(text).ok_or_else(|| {
                format!(
                    "{text:?} is neither a duration (10m, 2h, 30s) nor an RFC 3339 time \
                     with a zone (2026-11-30T07:00:00Z)"
                )
            })?)
        };
        Ok(Since {
            text: text.to_owned(),
            at,
        })
    }

    /// The earliest time shown, for an answer given at `now`.
    pub fn cutoff(&self, now: SystemTime) -> SystemTime {
        match self.at {
            SinceAt::Ago(d) => now
                .checked_sub(d)
                .map_or(SystemTime::UNIX_EPOCH, |t| t.max(SystemTime::UNIX_EPOCH)),
            SinceAt::At(t) => t,
        }
    }
}

/// RFC 3339 with a `Z` or `±HH:MM` zone (humantime reads the rest and knows only UTC).
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    if let Some(utc) = text.strip_suffix('Z') {
        return humantime::parse_rfc3339_weak(utc).ok();
    }
    let split = text.len().checked_sub(6)?;
    let (local, zone) = (text.get(..split)?, text.get(split..)?.as_bytes());
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if zone[3] != b':' || ![1, 2, 4, 5].iter().all(|&i| zone[i].is_ascii_digit()) {
        return None;
    }
    let digits = |a: u8, b: u8| u64::from(a - b'0') * 10 + u64::from(b - b'0');
    let (hours, minutes) = (digits(zone[1], zone[2]), digits(zone[4], zone[5]));
    if hours > 23 || minutes > 59 {
        return None;
    }
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    let wall = humantime::parse_rfc3339_weak(local).ok()?;
    // Local wall time = UTC + offset, so UTC = wall - offset.
    if sign > 0 {
        wall.checked_sub(offset)
    } else {
        wall.checked_add(offset)
    }
}

/// A bottle name as manifests spell it: lowercase letters, digits and `-`.
pub fn parse_bottle(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a bottle name (lowercase letters, digits and '-')"
        ))
    }
}

/// One of [`VERDICTS`].
pub fn parse_verdict(text: &str) -> Result<String, String> {
    if VERDICTS.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a verdict (one of {VERDICTS:?})"))
    }
}

fn parse_follow(text: &str) -> Result<bool, String> {
    match text {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("{text:?} is not 1, true, 0 or false")),
    }
}

/// Which events `GET /v1/audit` answers with, and whether it goes on with new ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub bottle: Option<String>,
    pub verdict: Option<String>,
    pub since: Option<Since>,
    pub follow: bool,
}

impl AuditQuery {
    /// Parses the query string of a request (`None`: no `?` at all).
    pub fn parse(query: Option<&str>) -> Result<AuditQuery, QueryError> {
        let mut q = AuditQuery::default();
        let mut seen: Vec<String> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).map_err(|why| QueryError::Bad {
                param: key.to_owned(),
                why,
            })?;
            let bad = |why: String| QueryError::Bad {
                param: key.clone(),
                why,
            };
            let value = decode(value).map_err(bad)?;
            if seen.contains(&key) {
                return Err(QueryError::Twice { param: key });
            }
            match key.as_str() {
                "bottle" => q.bottle = Some(parse_bottle(&value).map_err(bad)?),
                "verdict" => q.verdict = Some(parse_verdict(&value).map_err(bad)?),
                "since" => q.since = Some(Since::parse(&value).map_err(bad)?),
                "follow" => q.follow = parse_follow(&value).map_err(bad)?,
                _ => return Err(QueryError::Unknown { param: key }),
            }
            seen.push(key);
        }
        Ok(q)
    }

    /// `/v1/audit?...`: the request path for this query.
    pub fn to_path(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(b) = &self.bottle {
            pairs.push(format!("bottle={}", encode(b)));
        }
        if let Some(v) = &self.verdict {
            pairs.push(format!("verdict={}", encode(v)));
        }
        if let Some(s) = &self.since {
            pairs.push(format!("since={}", encode(&s.text)));
        }
        if self.follow {
            pairs.push("follow=1".to_owned());
        }
        if pairs.is_empty() {
            "/v1/audit".to_owned()
        } else {
            format!("/v1/audit?{}", pairs.join("&"))
        }
    }

    /// The line filter for an answer given at `now`.
    pub fn filter(&self, now: SystemTime) -> LineFilter {
        LineFilter {
            bottle: self.bottle.clone(),
            verdict: self.verdict.clone(),
            since: self.since.as_ref().map(|s| s.cutoff(now)),
        }
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes `%XX` escapes (a `+` stays a `+`: `since` offsets are written with one).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: &str) -> SystemTime {
        humantime::parse_rfc3339(ts).expect("ts")
    }

    #[test]
    fn a_full_query_parses_and_round_trips() {
        let q = AuditQuery::parse(Some("bottle=web-1&verdict=deny&since=10m&follow=1"))
            .expect("parses");
        assert_eq!(q.bottle.as_deref(), Some("web-1"));
        assert_eq!(q.verdict.as_deref(), Some("deny"));
        assert_eq!(
            q.since.as_ref().map(|s| &s.at),
            Some(&SinceAt::Ago(Duration::from_secs(600)))
        );
        assert!(q.follow);
        assert_eq!(
            q.to_path(),
            "/v1/audit?bottle=web-1&verdict=deny&since=10m&follow=1"
        );
        assert_eq!(AuditQuery::parse(Some(&q.to_path()[10..])), Ok(q));
        assert_eq!(AuditQuery::parse(None), Ok(AuditQuery::default()));
        assert_eq!(AuditQuery::default().to_path(), "/v1/audit");
    }

    #[test]
    fn since_takes_durations_and_zoned_rfc3339_times() {
        let now = at("2026-11-30T12:00:00Z");
        let cut = |text: &str| Since::parse(text).expect(text).cutoff(now);
        assert_eq!(cut("10m"), at("2026-11-30T11:50:00Z"));
        assert_eq!(cut("2h"), at("2026-11-30T10:00:00Z"));
        assert_eq!(cut("1h 30s"), at("2026-11-30T10:59:30Z"));
        assert_eq!(cut("30s"), at("2026-11-30T11:59:30Z"));
        assert_eq!(
            cut("100000y"),
            SystemTime::UNIX_EPOCH,
            "clamped, not a panic"
        );
        assert_eq!(cut("2026-11-30T07:00:00Z"), at("2026-11-30T07:00:00Z"));
        assert_eq!(
            cut("2026-11-30T07:00:00.25Z"),
            at("2026-11-30T07:00:00.25Z")
        );
        assert_eq!(cut("2026-11-30T08:30:00+01:30"), at("2026-11-30T07:00:00Z"));
        assert_eq!(
            cut("2026-11-30T02:00:00.5-05:00"),
            at("2026-11-30T07:00:00.5Z")
        );
        for bad in [
            "",
            "yesterday",
            "10 parsecs",
            "2026-11-30T07:00:00",
            "2026-11-30",
            "2026-11-30T07:00:00+1:00",
            "2026-11-30T07:00:00+25:00",
            "2026-13-30T07:00:00Z",
        ] {
            let e = Since::parse(bad).expect_err(bad);
            assert!(e.contains("neither a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_queries_name_the_parameter_and_why() {
        let err = |q: &str| AuditQuery::parse(Some(q)).expect_err(q).to_string();
        let e = err("since=soon");
        assert!(e.contains("since:") && e.contains("\"soon\""), "{e}");
        let e = err("verdict=maybe");
        assert!(e.contains("verdict:") && e.contains("allow"), "{e}");
        let e = err("bottle=Web");
        assert!(
            e.contains("bottle:") && e.contains("not a bottle name"),
            "{e}"
        );
        let e = err("follow=yes");
        assert!(e.contains("follow:"), "{e}");
        let e = err("colour=red");
        assert!(e.contains("unknown parameter \"colour\""), "{e}");
        let e = err("verdict=deny&verdict=allow");
        assert!(e.contains("verdict is given twice"), "{e}");
        let e = err("since=%ZZ");
        assert!(e.contains("since:") && e.contains("percent"), "{e}");
        let e = err("bottle");
        assert!(e.contains("bottle:"), "a key without a value: {e}");
    }

    #[test]
    fn values_are_percent_encoded_both_ways() {
        let q = AuditQuery {
            since: Some(Since::parse("2026-11-30T08:00:00+01:00").expect("since")),
            ..AuditQuery::default()
        };
        let path = q.to_path();
        assert_eq!(path, "/v1/audit?since=2026-11-30T08%3A00%3A00%2B01%3A00");
        assert_eq!(AuditQuery::parse(path.split_once('?').map(|p| p.1)), Ok(q));
        // Unencoded, as curl users may type it, the `+` is kept.
        let raw = AuditQuery::parse(Some("since=2026-11-30T08:00:00+01:00")).expect("raw");
        assert_eq!(
            raw.filter(SystemTime::now()).since,
            Some(at("2026-11-30T07:00:00Z"))
        );
    }

    #[test]
    fn the_filter_carries_the_query() {
        let q = AuditQuery::parse(Some("bottle=a&verdict=allow&since=1m")).expect("q");
        let now = at("2026-11-30T12:00:00Z");
        assert_eq!(
            q.filter(now),
            LineFilter {
                bottle: Some("a".into()),
                verdict: Some("allow".into()),
                since: Some(at("2026-11-30T11:59:00Z")),
            }
        );
    }
}
