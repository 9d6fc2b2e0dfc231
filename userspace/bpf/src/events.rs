//! Reads a bottle's audit ring buffer as a task on the agent's tokio runtime and hands
//! each decoded record to an [`EventHandler`] (the agent turns them into audit events);
//! checks the per-CPU loss counter and reports any increase, so a loss is never silent.
//!
//! The programs submit without waking the reader (a wake-up would run inside the bottle's
//! connect() and cost it ~20 times the program's own work), unless the ring holds more
//! than `CORK_EVENTS_WAKE_BYTES` (cork_events.h). So the reader also drains on a
//! [`POLL`] timer: that bounds how long a record waits when the bottle is quiet.

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use super::abi::{cork_event, cork_hook, cork_unix_event};
use super::counted::CountedAllows;
use super::maps::MapError;

/// What the reader does with what it reads. Called on a runtime worker: keep it short.
pub trait EventHandler: Send + 'static {
    /// One kernel record, as the programs wrote it.
    fn event(&mut self, ev: &cork_event);
    /// One record of a unix hook: the common record and the socket name judged.
    fn unix_event(&mut self, ev: &cork_unix_event);
    /// `lost` events could not be written since the last call (ring buffer full);
    /// `lost_total` since the bottle started.
    fn lost(&mut self, lost: u64, lost_total: u64);
    /// `count` allowed connects of `ev`'s flow that the kernel counted instead of
    /// recording (see [`crate::counted`]): one summary line, `ev` with `count`.
    fn counted(&mut self, ev: &cork_event, count: u64);
    /// Everything available was read: a good moment to flush.
    fn drained(&mut self);
    /// Called every [`LOSS_CHECK`], records or not: a handler that holds some back (the
    /// agent summarises repeated allows) writes what is due. What it still holds when the
    /// reader ends, it writes when it is dropped.
    fn tick(&mut self) {}
}

const EVENTS: &str = super::abi::map_names::CORK_EVENTS;
const LOST: &str = super::abi::map_names::CORK_LOST;
/// How often the ring is drained without a wake-up: the longest a record waits, unless
/// the agent's runtime is busy.
pub const POLL: Duration = Duration::from_millis(10);
/// How often the loss counter is looked at (one map read) and the handler's
/// [`EventHandler::tick`] runs.
pub const LOSS_CHECK: Duration = Duration::from_millis(100);
/// How long [`EventReader::finish`] waits for the final drain.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// A running reader; [`EventReader::finish`] drains what is left.
pub struct EventReader {
    stop: Option<oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

struct Reader<H> {
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    counted: Option<CountedAllows>,
    handler: H,
}

/// The ring buffer's fd, for the reactor (`RingBuf` owns it for the reader's life).
struct Ring(RingBuf<MapData>);

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl EventReader {
    /// Takes the ring buffer and loss counter out of the bottle's map object and starts
    /// reading them on `runtime`.
    pub fn start<H: EventHandler>(
        ebpf: &mut crate::MapSet,
        handler: H,
        runtime: &tokio::runtime::Handle,
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
        let counted = CountedAllows::take(ebpf)?;
        let _guard = runtime.enter();
        // SAFETY: the fd is the ring buffer map's, owned by `Ring` inside the AsyncFd for
        // the AsyncFd's whole life; `as_raw_fd` always returns that same fd.
        let ring = unsafe { AsyncFd::register_with_interest(Ring(ring), Interest::READABLE) }
            .map_err(|e| MapError::Register(e.into()))?;
        let (stop, stopped) = oneshot::channel();
        let (done_tx, done) = mpsc::channel();
        let reader = Reader {
            lost,
            lost_seen: 0,
            counted,
            handler,
        };
        let task = runtime.spawn(async move {
            reader.run(ring, stopped).await;
            let _ = done_tx.send(());
        });
        Ok(EventReader {
            stop: Some(stop),
            done,
            task,
        })
    }

    /// Stops the reader after a final drain and waits for it (up to a few seconds).
    /// Blocks the calling thread: call it outside the runtime's workers.
    pub fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.done.recv_timeout(FINISH_WAIT).is_err() {
            tracing::error!("the audit reader did not finish its last drain in time");
        }
    }
}

impl Drop for EventReader {
    fn drop(&mut self) {
        // Not finished: stop reading (what is left stays in the ring, counted by nobody).
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

impl<H: EventHandler> Reader<H> {
    async fn run(mut self, mut ring: AsyncFd<Ring>, mut stopped: oneshot::Receiver<()>) {
        let mut poll = tokio::time::interval(POLL);
        let mut loss = tokio::time::interval(LOSS_CHECK);
        // A busy runtime skips ticks instead of bunching them up afterwards.
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loss.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wrote = tokio::select! {
                ready = ring.readable_mut() => match ready {
                    Ok(mut guard) => {
                        let n = self.drain(&mut guard.get_inner_mut().0);
                        guard.clear_ready();
                        n > 0
                    }
                    Err(e) => {
                        tracing::error!("waiting on the audit ring buffer: {e}");
                        poll.tick().await;
                        false
                    }
                },
                _ = poll.tick() => self.drain(&mut ring.get_mut().0) > 0,
                _ = loss.tick() => {
                    // Records first: a flow's summary shows its latest record.
                    let read = self.drain(&mut ring.get_mut().0) > 0;
                    let summed = self.report_counted(false);
                    self.handler.tick();
                    self.report_loss() || read || summed
                }
                _ = &mut stopped => {
                    self.drain(&mut ring.get_mut().0);
                    self.report_counted(true);
                    self.report_loss();
                    self.handler.drained();
                    return;
                }
            };
            if wrote {
                self.handler.drained();
            }
        }
    }

    /// Hands every available record to the handler; returns how many there were.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> usize {
        let mut n = 0;
        while let Some(item) = ring.next() {
            n += 1;
            if item.len() < std::mem::size_of::<cork_event>() {
                tracing::error!("short audit record ({} bytes)", item.len());
                continue;
            }
            // SAFETY: the record is at least size_of::<cork_event>() bytes, written by the
            // kernel programs as a struct cork_event (same header); read_unaligned copes with
            // the ring buffer's 8-byte alignment not being guaranteed for the slice.
            let ev: cork_event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let unix = ev.hook == cork_hook::CORK_HOOK_CONNECT_UNIX as u8
                || ev.hook == cork_hook::CORK_HOOK_SENDMSG_UNIX as u8;
            if unix && item.len() >= std::mem::size_of::<cork_unix_event>() {
                // SAFETY: as above, for the unix hooks' longer record (size checked).
                let ev: cork_unix_event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                drop(item);
                self.handler.unix_event(&ev);
                continue;
            }
            drop(item);
            let summary = self.counted.as_mut().and_then(|c| c.note(&ev));
            if let Some((last, count)) = summary {
                self.handler.counted(&last, count);
            }
            self.handler.event(&ev);
        }
        n
    }

    /// Hands what the kernel counted since the last sweep to the handler; returns whether
    /// there was any.
    fn report_counted(&mut self, all: bool) -> bool {
        let Some(counted) = &mut self.counted else {
            return false;
        };
        let summaries = counted.sweep(crate::boot_ns(), all);
        for (ev, count) in &summaries {
            self.handler.counted(ev, *count);
        }
        !summaries.is_empty()
    }

    /// Reports new losses to the handler; returns whether there were any.
    fn report_loss(&mut self) -> bool {
        let total: u64 = match self.lost.get(&0, 0) {
            Ok(values) => values.iter().sum(),
            Err(e) => {
                tracing::error!("reading the audit loss counter: {e}");
                return false;
            }
        };
        if total <= self.lost_seen {
            return false;
        }
        let lost = total - self.lost_seen;
        self.lost_seen = total;
        tracing::warn!("{lost} kernel audit events lost (ring buffer full)");
        self.handler.lost(lost, total);
        true
    }
}
