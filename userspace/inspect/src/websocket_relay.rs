//! An upgraded WebSocket connection, relayed with the bottle's frames inspected: each data
//! message (all its fragments) is one DLP stream, and the bottle's bytes are forwarded only
//! once DLP has settled them, so a secret split over frames or reads is still stopped
//! before any of it leaves. A finding under `block` (and `redact`, which cannot rewrite a
//! masked frame in place) closes the connection with status 1008; `log` forwards and
//! records. Frames that break RFC 6455 close it too. Server-to-bottle bytes are copied as
//! they come.

use std::collections::VecDeque;
use std::sync::Arc;

use cork_policy::DlpAction;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dlp_rules::DlpRules;
use super::return_body::AuditOnEnd;
use super::server::Shared;
use super::websocket::{FrameReader, Opcode, Sender, WsEvent};
use cork_dlp::{Scanner, StreamScan};

/// Largest data message the bottle may send (all fragments together).
const MAX_MESSAGE: u64 = 64 << 20;

/// Close frame, server to client, status 1008 (policy violation).
const CLOSE_POLICY: [u8; 4] = [0x88, 0x02, 0x03, 0xf0];

pub async fn relay(
    shared: Arc<Shared>,
    down: OnUpgrade,
    up: OnUpgrade,
    mut audit: AuditOnEnd,
    rules: DlpRules,
) {
    let (down, up) = match (down.await, up.await) {
        (Ok(d), Ok(u)) => (d, u),
        _ => {
            audit.event.reason = "upgrade_failed";
            audit.write();
            return;
        }
    };
    let (mut down_r, mut down_w) = tokio::io::split(TokioIo::new(down));
    let (mut up_r, mut up_w) = tokio::io::split(TokioIo::new(up));
    let mut inspect = Inspect::new(shared.cfg.scanner.clone(), rules);
    let mut bytes_down = 0u64;

    let stop = {
        let to_bottle = async {
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match up_r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if down_w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        bytes_down += n as u64;
                    }
                }
            }
        };
        let from_bottle = async {
            let mut buf = vec![0u8; 16 << 10];
            loop {
                let n = match down_r.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => n,
                };
                match inspect.feed(&buf[..n]) {
                    Ok(out) => {
                        if !out.is_empty() && up_w.write_all(&out).await.is_err() {
                            return None;
                        }
                    }
                    Err(reason) => return Some(reason),
                }
            }
        };
        // Whichever side ends first ends the relay.
        tokio::select! {
            r = from_bottle => r,
            () = to_bottle => None,
        }
    };
    if stop.is_some() {
        // Tell the bottle why; the upstream just sees the connection end.
        let _ = down_w.write_all(&CLOSE_POLICY).await;
    }
    let _ = down_w.shutdown().await;
    let _ = up_w.shutdown().await;

    audit.event.bytes_down = bytes_down;
    audit.event.bytes_up = inspect.forwarded;
    for d in &inspect.detectors {
        if !audit.event.detectors.contains(d) {
            audit.event.detectors.push(d.clone());
        }
    }
    match stop {
        Some(reason) => {
            audit.event.verdict = "deny";
            audit.event.reason = reason;
            if reason == "dlp_blocked" {
                audit.event.dlp_action = Some("block");
            }
        }
        None if !inspect.detectors.is_empty() => {
            audit.event.dlp_action = Some("log");
            audit.event.reason = "dlp_logged";
        }
        None => {}
    }
    audit.write();
}

/// The bottle-to-server direction: frames parsed, data messages scanned, raw bytes held
/// until settled.
struct Inspect {
    reader: FrameReader,
    scanner: Arc<Scanner>,
    rules: DlpRules,
    /// The strongest action findings so far called for.
    action: Option<DlpAction>,
    scan: Option<StreamScan>,
    /// Raw wire bytes waiting, each with the scan offset that must be settled first
    /// (0 when nothing in the current message precedes them).
    pending: VecDeque<(Vec<u8>, u64)>,
    forwarded: u64,
    detectors: Vec<String>,
}

impl Inspect {
    fn new(scanner: Arc<Scanner>, rules: DlpRules) -> Self {
        Inspect {
            reader: FrameReader::new(Sender::Client, MAX_MESSAGE),
            scanner,
            rules,
            action: None,
            scan: None,
            pending: VecDeque::new(),
            forwarded: 0,
            detectors: Vec::new(),
        }
    }

    /// The bytes that may go upstream now, or the reason to close.
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, &'static str> {
        let Inspect {
            reader,
            scanner,
            scan,
            pending,
            ..
        } = self;
        let mut findings = Vec::new();
        let result = reader.feed(chunk, &mut |ev| match ev {
            WsEvent::Frame { raw, .. } => {
                let at = scan.as_ref().map_or(0, StreamScan::position);
                pending.push_back((raw.to_vec(), at));
            }
            WsEvent::Payload { message, data, raw } => {
                if matches!(message, Opcode::Text | Opcode::Binary) {
                    let s = scan.get_or_insert_with(|| scanner.stream_shared());
                    findings.extend(s.feed(data));
                    pending.push_back((raw.to_vec(), s.position()));
                } else {
                    let at = scan.as_ref().map_or(0, StreamScan::position);
                    pending.push_back((raw.to_vec(), at));
                }
            }
            WsEvent::FrameEnd { message_end } => {
                if message_end && let Some(s) = scan.take() {
                    findings.extend(s.finish());
                    // The message is fully scanned: everything before this point is free.
                    for p in pending.iter_mut() {
                        p.1 = 0;
                    }
                }
            }
        });
        if let Some(a) = self.rules.judge(&mut findings) {
            self.action = Some(self.action.map_or(a, |s| s.max(a)));
        }
        for f in findings {
            if !self.detectors.contains(&f.detector) {
                self.detectors.push(f.detector);
            }
        }
        if let Err(e) = result {
            return Err(e.reason());
        }
        // Frames cannot be redacted: anything stronger than `log` closes the socket.
        if self.action.is_some_and(|a| a != DlpAction::Log) {
            return Err("dlp_blocked");
        }
        let settled = self.scan.as_ref().map_or(u64::MAX, StreamScan::settled);
        let mut out = Vec::new();
        while let Some((_, at)) = self.pending.front() {
            if *at > settled {
                break;
            }
            let (raw, _) = self.pending.pop_front().expect("front exists");
            out.extend_from_slice(&raw);
        }
        self.forwarded += out.len() as u64;
        Ok(out)
    }
}
