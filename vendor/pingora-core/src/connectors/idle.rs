// verge: the idle upstream connections of a `TransportConnector`, kept without a task per connection.
//
// pingora's pool (pingora-pool) spawns a task for every connection it is given back, to notice the
// server closing it or its idle timeout, and hands it over through an `Arc<Mutex<Stream>>`, a oneshot
// and a `Notify`: on a busy keep-alive origin that is a task spawned, polled and woken, and half a dozen
// allocations, per request. This pool keeps idle connections in a list per peer key behind one lock and
// gives them back newest first. A connection that has idled past its timeout is never handed out, and
// one the server closed (or sent bytes on) fails the reuse test the caller runs before using it, as with
// pingora's pool. So that idle connections do not hold file descriptors after the server or the timeout
// ended them, one sweeper task per pool wakes every `SWEEP_INTERVAL` while the pool holds any and drops
// those expired or no longer reusable. The pool's size bounds the idle connections of all keys
// together; past it the oldest is dropped (pingora's pool evicts its least recently used the same way).

use super::{test_reusable_stream, PoolCallback};
use crate::protocols::Stream;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper looks at the idle connections while there are any.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    since: Instant,
    timeout: Option<Duration>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.timeout
            .is_some_and(|t| now.saturating_duration_since(self.since) >= t)
    }
}

#[derive(Default)]
struct Lists {
    /// Per peer key, oldest first. Few keys per connector (one per origin address and TLS setting), so
    /// a vector searched in order beats hashing.
    by_key: Vec<(u64, Vec<Idle>)>,
    count: usize,
}

impl Lists {
    fn list(&mut self, key: u64) -> &mut Vec<Idle> {
        let i = match self.by_key.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.by_key.push((key, Vec::new()));
                self.by_key.len() - 1
            }
        };
        &mut self.by_key[i].1
    }

    /// Removes the connection that has idled longest, of any key.
    fn pop_oldest(&mut self) -> Option<Idle> {
        let (i, _) = self
            .by_key
            .iter()
            .enumerate()
            .filter_map(|(i, (_, list))| list.first().map(|idle| (i, idle.since)))
            .min_by_key(|(_, since)| *since)?;
        self.count -= 1;
        Some(self.by_key[i].1.remove(0))
    }
}

pub(crate) struct IdlePool {
    size: usize,
    lists: Mutex<Lists>,
    sweeping: AtomicBool,
    /// The connector's count of idle connections found holding unexpected bytes.
    unexpected_data: Arc<AtomicU64>,
    callback: Option<PoolCallback>,
}

impl IdlePool {
    pub(crate) fn new(
        size: usize,
        unexpected_data: Arc<AtomicU64>,
        callback: Option<PoolCallback>,
    ) -> Arc<Self> {
        Arc::new(IdlePool {
            size,
            lists: Mutex::new(Lists::default()),
            sweeping: AtomicBool::new(false),
            unexpected_data,
            callback,
        })
    }

    /// Keeps `stream` for reuse under `key` until `timeout` (None: until the server closes it or the
    /// pool needs the room).
    pub(crate) fn put(self: &Arc<Self>, key: u64, stream: Stream, timeout: Option<Duration>) {
        if self.size == 0 {
            return;
        }
        let since = Instant::now();
        let evicted = {
            let mut lists = self.lists.lock();
            lists.list(key).push(Idle {
                stream,
                since,
                timeout,
            });
            lists.count += 1;
            if lists.count > self.size {
                lists.pop_oldest()
            } else {
                None
            }
        };
        if let Some(evicted) = evicted {
            if let Some(callback) = &self.callback {
                callback(evicted.since.elapsed());
            }
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            let pool = Arc::downgrade(self);
            pingora_runtime::current_handle().spawn(sweep(pool));
        }
    }

    /// The newest idle connection under `key` that has not passed its timeout. The caller still tests
    /// it (`test_reusable_stream`): the server may have closed it since the last sweep.
    pub(crate) fn take(&self, key: u64) -> Option<Stream> {
        let mut lists = self.lists.lock();
        let i = lists.by_key.iter().position(|(k, _)| *k == key)?;
        let mut now = None;
        while let Some(idle) = lists.by_key[i].1.pop() {
            lists.count -= 1;
            if idle.timeout.is_some() && idle.expired(*now.get_or_insert_with(Instant::now)) {
                continue; // dropped: it idled past its timeout
            }
            return Some(idle.stream);
        }
        None
    }

    /// Drops the idle connections that expired or that the server closed (or sent bytes on); returns
    /// how many are left.
    fn sweep_once(&self) -> usize {
        let now = Instant::now();
        let mut lists = self.lists.lock();
        let mut left = 0;
        for (_, list) in lists.by_key.iter_mut() {
            list.retain_mut(|idle| {
                !idle.expired(now) && test_reusable_stream(&mut idle.stream, &self.unexpected_data)
            });
            left += list.len();
        }
        lists.by_key.retain(|(_, list)| !list.is_empty());
        lists.count = left;
        left
    }
}

/// The sweeper: runs while the pool holds idle connections (and the pool exists), then stops; the next
/// `put` starts it again.
async fn sweep(pool: Weak<IdlePool>) {
    let mut running = Running(pool.clone());
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if pool.sweep_once() == 0 {
            pool.sweeping.store(false, Ordering::Release);
            // A put between the sweep and the store above saw `sweeping` still set and started no
            // sweeper: look once more.
            if pool.lists.lock().count == 0 || pool.sweeping.swap(true, Ordering::AcqRel) {
                running.0 = Weak::new(); // ended as it should: nothing to undo
                return;
            }
        }
    }
}

/// Clears `sweeping` if the sweeper is dropped while it runs (its runtime shut down), so that the next
/// `put` starts another.
struct Running(Weak<IdlePool>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            pool.sweeping.store(false, Ordering::Release);
        }
    }
}
