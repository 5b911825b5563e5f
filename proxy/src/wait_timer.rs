//! Bounded waits on a timer that a connection keeps for all of them: a viewer's kept-alive wait for its
//! next request, an origin's answer on the pass exchange. A `tokio::time::timeout` per wait registers a
//! timer in tokio's wheel and removes it again (two locked wheel operations, ~500 instructions a
//! request, most of them for waits that end well before their deadline). A connection's one timer is
//! registered once and set lazily: a wait leaves it at an earlier deadline it has, and only when it
//! fires before the wait's own deadline is it set to that one (a later deadline is set at once). It can fire while nobody waits on it (a request
//! that outlasts the previous wait's deadline): one spurious wake of the connection's task, which the
//! task's futures take as nothing ready.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{ready, Poll};
use std::time::Duration;

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::TlsStream;
use pingora_core::protocols::Stream;
use tokio::time::{Instant, Sleep};

/// A connection's timer, boxed to be kept with its stream.
pub type WaitTimer = Pin<Box<Sleep>>;

/// A timer for a connection that has none yet (registered when first waited on).
pub fn new_timer() -> WaitTimer {
    Box::pin(tokio::time::sleep(Duration::ZERO))
}

/// `fut`'s output, or `None` when it has waited `wait` (counted from its first poll that had to wait:
/// a future ready at once reads no clock).
pub async fn within<F: Future>(mut timer: Pin<&mut Sleep>, wait: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut deadline = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let deadline = *deadline.get_or_insert_with(|| {
            let deadline = deadline_after(wait);
            // Left at a later deadline (a longer wait's): it would fire too late, so it is set now.
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            deadline
        });
        ready!(timer.as_mut().poll(cx));
        if Instant::now() < deadline {
            // Fired at an earlier wait's deadline: set to this one's. Fired again at once means the
            // clock is past it (tokio rounds deadlines up to its millisecond ticks).
            timer.as_mut().reset(deadline);
            ready!(timer.as_mut().poll(cx));
        }
        Poll::Ready(None)
    })
    .await
}

/// `wait` from now (a wait too long to add is as good as forever: a year).
fn deadline_after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// The timer kept with `stream`'s socket (plain TCP or TLS over TCP); none for other streams.
pub fn kept_timer(stream: &mut Stream) -> Option<&mut Option<WaitTimer>> {
    let any = stream.as_any_mut();
    if any.is::<L4Stream>() {
        return any.downcast_mut::<L4Stream>().map(L4Stream::wait_timer);
    }
    any.downcast_mut::<TlsStream<L4Stream>>().and_then(TlsStream::socket_mut).map(L4Stream::wait_timer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_own_deadline_whatever_the_timer_was_left_at() {
        let mut timer = new_timer();
        // Ready at once: its output, and the timer untouched.
        assert_eq!(within(timer.as_mut(), Duration::from_millis(10), async { 7 }).await, Some(7));
        // A wait that runs out: it ends no sooner than its own deadline.
        let started = Instant::now();
        assert_eq!(within(timer.as_mut(), Duration::from_millis(100), std::future::pending::<()>()).await, None);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The timer left at a much later deadline: a shorter wait still ends at its own.
        timer.as_mut().reset(Instant::now() + Duration::from_secs(3600));
        let started = Instant::now();
        assert_eq!(within(timer.as_mut(), Duration::from_millis(50), std::future::pending::<()>()).await, None);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(1), "{waited:?}");
        // Left at a deadline that comes before this wait's: fires early, is set again, and the wait
        // still lasts its whole length.
        timer.as_mut().reset(Instant::now() + Duration::from_millis(10));
        let started = Instant::now();
        assert_eq!(within(timer.as_mut(), Duration::from_millis(200), std::future::pending::<()>()).await, None);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // A future that finishes within its wait.
        let sleeper = tokio::time::sleep(Duration::from_millis(30));
        assert_eq!(within(timer.as_mut(), Duration::from_millis(100), sleeper).await, Some(()));
    }
}
