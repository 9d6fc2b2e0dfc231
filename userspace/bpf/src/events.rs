//! Reads a bottle's audit ring buffer on its own thread and hands each decoded record to an
//! [`EventHandler`] (the agent turns them into audit events); polls the per-CPU loss
//! counter and reports any increase, so a loss is never silent.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::abi::cork_event;
use super::maps::MapError;

/// What the reader does with what it reads. Called on the reader's thread.
pub trait EventHandler: Send + 'static {
    /// One kernel record, as the programs wrote it.
    fn event(&mut self, ev: &cork_event);
    /// `lost` events could not be written since the last call (ring buffer full);
    /// `lost_total` since the bottle started.
    fn lost(&mut self, lost: u64, lost_total: u64);
    /// Everything available was read: a good moment to flush.
    fn drained(&mut self);
}

const EVENTS: &str = "cork_events";
const LOST: &str = "cork_lost";

/// A running reader; [`EventReader::finish`] drains what is left.
pub struct EventReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Reader<H> {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    handler: H,
}

impl EventReader {
    /// Takes the ring buffer and loss counter out of the bottle's map object.
    pub fn start<H: EventHandler>(ebpf: &mut Ebpf, handler: H) -> Result<Self, MapError> {
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
            handler,
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cork-audit".into())
            .spawn(move || reader.run(&stop2))
            .map_err(MapError::Thread)?;
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

impl<H: EventHandler> Reader<H> {
    fn run(&mut self, stop: &AtomicBool) {
        loop {
            let done = stop.load(Ordering::SeqCst);
            {
                let mut fds = [PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
                // Wake at least every 100 ms to notice `stop` and new losses.
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            self.drain();
            self.report_loss();
            self.handler.drained();
            if done {
                return;
            }
        }
    }

    fn drain(&mut self) {
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
            self.handler.event(&ev);
        }
    }

    fn report_loss(&mut self) {
        let total: u64 = match self.lost.get(&0, 0) {
            Ok(values) => values.iter().sum(),
            Err(e) => {
                tracing::error!("reading the audit loss counter: {e}");
                return;
            }
        };
        if total > self.lost_seen {
            let lost = total - self.lost_seen;
            self.lost_seen = total;
            tracing::warn!("{lost} kernel audit events lost (ring buffer full)");
            self.handler.lost(lost, total);
        }
    }
}
