//! Reads a bottle's audit ring buffer on its own thread and writes audit events; polls the
//! per-CPU loss counter and reports any increase as a loss event.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::abi::cork_event;
use super::maps::MapError;
use crate::audit::{self, AuditSink, Enrichment, LossEvent};

const EVENTS: &str = "cork_events";
const LOST: &str = "cork_lost";

/// A running reader; [`EventReader::finish`] drains what is left.
pub struct EventReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Reader {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    enrichment: Enrichment,
    sink: Arc<Mutex<AuditSink>>,
}

impl EventReader {
    /// Takes the ring buffer and loss counter out of the bottle's map object.
    pub fn start(
        ebpf: &mut Ebpf,
        enrichment: Enrichment,
        sink: Arc<Mutex<AuditSink>>,
    ) -> Result<Self, MapError> {
        let map = ebpf.take_map(EVENTS).ok_or(MapError::Missing(EVENTS))?;
        let ring = RingBuf::try_from(map).map_err(|source| MapError::Aya {
            map: EVENTS,
            operation: "open",
            source,
        })?;
        let map = ebpf.take_map(LOST).ok_or(MapError::Missing(LOST))?;
        let lost = PerCpuArray::try_from(map).map_err(|source| MapError::Aya {
            map: LOST,
            operation: "open",
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = Reader {
            ring,
            lost,
            lost_seen: 0,
            enrichment,
            sink,
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cork-audit".into())
            .spawn(move || reader.run(&stop2))
            .expect("spawning the audit thread");
        Ok(EventReader {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a final drain.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EventReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Reader {
    fn run(&mut self, stop: &AtomicBool) {
        loop {
            let done = stop.load(Ordering::SeqCst);
            {
                let mut fds = [PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
                // Wake at least every 100 ms to notice `stop` and new losses.
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            let sink = self.sink.clone();
            let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
            self.drain(&mut sink);
            self.report_loss(&mut sink);
            if let Err(e) = sink.flush() {
                tracing::error!("{e:#}");
            }
            if done {
                return;
            }
        }
    }

    fn drain(&mut self, sink: &mut AuditSink) {
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<cork_event>() {
                tracing::error!("short audit record ({} bytes)", item.len());
                continue;
            }
            // SAFETY: the record is at least size_of::<cork_event>() bytes, written by the
            // kernel programs as a struct cork_event (same header); read_unaligned copes with
            // the ring buffer's 8-byte alignment not being guaranteed for the slice.
            let ev: cork_event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            let out = audit::verdict_from_kernel(&ev, &self.enrichment);
            if let Err(e) = sink.write(&out) {
                tracing::error!("{e:#}");
            }
        }
    }

    fn report_loss(&mut self, sink: &mut AuditSink) {
        let total: u64 = match self.lost.get(&0, 0) {
            Ok(values) => values.iter().sum(),
            Err(e) => {
                tracing::error!("reading the audit loss counter: {e}");
                return;
            }
        };
        if total > self.lost_seen {
            let ev = LossEvent {
                ts: audit::now_rfc3339(),
                bottle: self.enrichment.bottle.clone(),
                layer: "audit",
                event: "loss",
                lost: total - self.lost_seen,
                lost_total: total,
            };
            self.lost_seen = total;
            tracing::warn!("{} kernel audit events lost (ring buffer full)", ev.lost);
            if let Err(e) = sink.write(&ev) {
                tracing::error!("{e:#}");
            }
        }
    }
}
