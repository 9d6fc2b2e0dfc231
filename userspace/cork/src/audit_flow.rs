//! `cork audit --flow COOKIE`: the whole story of one socket from audit lines — the DNS
//! answer that made its destination reachable (name, rule, answers), every kernel verdict
//! on it, and the inspecting proxy's events for the connection it carried. The socket
//! cookie (`cookie`, the kernel's id of the socket) joins the kernel and proxy events; a
//! kernel event that names a `domain` is joined to the latest DNS answer for that name
//! that listed its destination and came before it. Pure: lines in, lines out.

use serde_json::Value;

/// The lines of `lines` that tell the story of socket `cookie`, in their order.
pub fn story<'a>(lines: &[&'a [u8]], cookie: u64) -> Vec<&'a [u8]> {
    let events: Vec<Option<Value>> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).ok())
        .collect();
    let mut keep = vec![false; lines.len()];
    for (i, ev) in events.iter().enumerate() {
        let Some(ev) = ev else { continue };
        if ev.get("cookie").and_then(Value::as_u64) != Some(cookie) {
            continue;
        }
        keep[i] = true;
        if let Some(j) = taught_by(&events[..i], ev) {
            keep[j] = true;
        }
    }
    lines
        .iter()
        .zip(keep)
        .filter_map(|(l, k)| k.then_some(*l))
        .collect()
}

/// The index of the latest DNS event before `ev` that answered `ev`'s domain with `ev`'s
/// destination.
fn taught_by(before: &[Option<Value>], ev: &Value) -> Option<usize> {
    let domain = ev.get("domain")?.as_str()?;
    let dst = ev.get("dst")?.as_str()?;
    let bottle = ev.get("bottle");
    before.iter().enumerate().rev().find_map(|(j, cand)| {
        let cand = cand.as_ref()?;
        let is_answer = cand.get("layer")?.as_str()? == "dns"
            && cand.get("bottle") == bottle
            && cand.get("name")?.as_str()? == domain
            && cand
                .get("answers")?
                .as_array()?
                .iter()
                .any(|a| a.as_str() == Some(dst));
        is_answer.then_some(j)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_joins_its_dns_answer_kernel_verdicts_and_proxy_events() {
        let lines = [
            r#"{"bottle":"b","layer":"dns","name":"api.x.test","answers":["198.51.100.9"],"verdict":"allow"}"#,
            r#"{"bottle":"b","layer":"dns","name":"api.x.test","answers":["198.51.100.10"],"verdict":"allow"}"#,
            r#"{"bottle":"b","layer":"dns","name":"other.x.test","answers":["198.51.100.10"],"verdict":"allow"}"#,
            r#"{"bottle":"b","layer":"kernel","hook":"connect4","cookie":7,"dst":"198.51.100.10","domain":"api.x.test"}"#,
            r#"{"bottle":"b","layer":"kernel","hook":"connect4","cookie":8,"dst":"198.51.100.10","domain":"api.x.test"}"#,
            r#"{"bottle":"b","layer":"proxy","event":"request","cookie":7,"method":"GET"}"#,
            r#"{"bottle":"c","layer":"dns","name":"api.x.test","answers":["198.51.100.10"],"verdict":"allow"}"#,
            "not json",
        ];
        let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let got: Vec<&str> = story(&bytes, 7)
            .into_iter()
            .map(|l| std::str::from_utf8(l).expect("utf8"))
            .collect();
        assert_eq!(got, [lines[1], lines[3], lines[5]]);
        assert!(story(&bytes, 99).is_empty());
    }
}
