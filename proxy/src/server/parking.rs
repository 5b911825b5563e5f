//! Idle HTTP/1 connections parked off their tasks. A plain-TCP viewer connection that stays quiet for
//! `PARK_AFTER` gives up its task, its future's box and its stream and waits in its listener's lot as
//! a socket, its digest and its keep-alive settings (~0.6 KB; nginx likewise frees a request's memory
//! as soon as its connection goes idle); its next request starts a new task. The lot closes
//! connections at the idle timeout (to within `SWEEP`) and all of them when the service shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use pingora_core::apps::HttpPersistentSettings;
use pingora_core::protocols::l4::stream::ParkedTcp;
use pingora_core::server::ShutdownWatch;
use tokio::sync::mpsc;

/// How long a connection waits for its next request in its own task before it is parked. Long enough
/// that requests in a burst (a page's assets, a client's pipeline of calls) never pay for parking (a
/// task spawned when the connection resumes), short enough that a burst of new connections going quiet
/// does not hold every one's task at once: with 10,000 connections opened in 1.7 s and left idle, RSS
/// grew 0.58 KB per connection parked after 100 ms, 0.78 after 250 ms, 1.0 after 500 ms and 1.4-1.8
/// after 2 s (the tasks' memory, freed once they park, is what the allocator keeps).
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// How often the lot looks for connections past the idle timeout.
const SWEEP: Duration = Duration::from_secs(1);

/// One of `server.max_connections`: taken when a connection is accepted and given back when it closes,
/// wherever it is then (its task, or a lot).
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// A slot if fewer than `max` connections hold one.
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(open.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A parked connection: what its next request needs to start where the last one left off.
pub struct Idle {
    pub tcp: ParkedTcp,
    pub persistent: Option<HttpPersistentSettings>,
    /// No request served yet (a viewer that connected and went quiet).
    pub first: bool,
    pub slot: ConnectionSlot,
    /// When its last response was sent (the idle timeout runs from there).
    since: Instant,
}

impl Idle {
    pub fn new(
        tcp: ParkedTcp,
        persistent: Option<HttpPersistentSettings>,
        first: bool,
        slot: ConnectionSlot,
        since: Instant,
    ) -> Self {
        Self { tcp, persistent, first, slot, since }
    }
}

/// What the lot does with a connection whose viewer sent its next request.
pub trait Resume: Send + Sync + 'static {
    fn resume(self: &Arc<Self>, idle: Idle, shutdown: &ShutdownWatch);
}

/// A listener's lot: its connections wait in one task.
pub struct Lot {
    arrivals: mpsc::UnboundedSender<Idle>,
}

impl Lot {
    /// Starts the lot's task on the current runtime.
    pub fn start<R: Resume>(resume: Arc<R>, idle_timeout: Duration, shutdown: ShutdownWatch) -> Self {
        let (arrivals, received) = mpsc::unbounded_channel();
        tokio::spawn(run(resume, received, idle_timeout, shutdown));
        Self { arrivals }
    }

    /// Parks `idle`; after a shutdown, closes it.
    pub fn park(&self, idle: Idle) {
        // The lot ends only at a shutdown: the connection is then dropped, that is closed.
        let _ = self.arrivals.send(idle);
    }
}

/// The lot's task: waits for any parked connection's next request, resumes it, and sweeps out those
/// past the idle timeout; at a shutdown, closes them all.
async fn run<R: Resume>(
    resume: Arc<R>,
    mut arrivals: mpsc::UnboundedReceiver<Idle>,
    idle_timeout: Duration,
    mut shutdown: ShutdownWatch,
) {
    let mut waiting: FuturesUnordered<Waiting> = FuturesUnordered::new();
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(idle) = arrivals.recv() => {
                crate::observe::metrics::connections_parked(1);
                waiting.push(Waiting { idle: Some(idle), waker: None, expired: false });
            }
            Some(done) = waiting.next(), if !waiting.is_empty() => {
                crate::observe::metrics::connections_parked(-1);
                if let Some(idle) = done {
                    resume.resume(idle, &shutdown);
                }
            }
            _ = sweep.tick(), if !waiting.is_empty() => {
                let now = Instant::now();
                for parked in waiting.iter_mut() {
                    parked.expire_if_idle_since(now, idle_timeout);
                }
            }
        }
    }
    crate::observe::metrics::connections_parked(-(waiting.len() as i64));
    // Dropping `waiting` (and what is still in `arrivals`) closes every parked connection.
}

/// A parked connection waiting for its next request: ready with it when the viewer sends something,
/// with nothing (and the connection closed) when it ends, fails or is swept out.
struct Waiting {
    idle: Option<Idle>,
    /// The lot's waker for this connection, kept to wake it when it is swept out.
    waker: Option<Waker>,
    expired: bool,
}

impl Waiting {
    fn expire_if_idle_since(&mut self, now: Instant, idle_timeout: Duration) {
        let Some(idle) = &self.idle else { return };
        if now.saturating_duration_since(idle.since) >= idle_timeout {
            self.expired = true;
            if let Some(waker) = &self.waker {
                waker.wake_by_ref();
            }
        }
    }
}

impl Future for Waiting {
    type Output = Option<Idle>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Idle>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        let Some(idle) = &this.idle else { return Poll::Ready(None) };
        // Every poll peeks: a readiness event can be stale (for bytes already read before the driver
        // delivered it), and a stale one taken for a request would wait inside pingora's request.
        match idle.tcp.poll_readable(cx, true) {
            Poll::Ready(Ok(())) => Poll::Ready(this.idle.take()),
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => {
                if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    this.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
