//! A connection task that does not wake itself.
//!
//! Inside one connection task, parts hand work to each other through wakers: hyper's server
//! dispatcher and the handler, the upstream connection the handler drives and the answer body
//! it feeds (`backend::http1`). When one part wakes the task while the task is being polled,
//! Tokio counts it as a yield: it queues the task again and wakes a parked worker thread to
//! steal it. At dashboard rates that woke the idle worker (a futex wake and two context
//! switches) several times per request, for nothing. [`Quiet`] polls the connection with a
//! waker that notes such wakes instead of passing them on, and polls again at once while one
//! was noted. A wake from outside the poll (the I/O driver, another task) passes straight on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Polls in a row while the inner future keeps waking itself, before yielding for real.
const MAX_REPOLLS: usize = 8;

const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// The waker the inner future sees.
struct Catch {
    task: AtomicWaker,
    state: AtomicU8,
}

impl Wake for Catch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & POLLING == 0 {
            self.task.wake();
        }
    }
}

/// `future`, polled so that its wakes of itself during a poll become an immediate re-poll.
pub struct Quiet<F> {
    future: Pin<Box<F>>,
    catch: Arc<Catch>,
    waker: Waker,
}

impl<F: Future> Quiet<F> {
    pub fn new(future: F) -> Quiet<F> {
        let catch = Arc::new(Catch {
            task: AtomicWaker::new(),
            state: AtomicU8::new(0),
        });
        Quiet {
            future: Box::pin(future),
            waker: Waker::from(catch.clone()),
            catch,
        }
    }
}

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.catch.task.register(cx.waker());
        for _ in 0..MAX_REPOLLS {
            this.catch.state.store(POLLING, Ordering::Release);
            let mut inner = Context::from_waker(&this.waker);
            let polled = this.future.as_mut().poll(&mut inner);
            let state = this.catch.state.swap(0, Ordering::AcqRel);
            if polled.is_ready() || state & WOKEN == 0 {
                return polled;
            }
            // Tokio's cooperative budget is spent: its resources answer Pending and wake the
            // task so that it yields. Let it.
            if !tokio::task::coop::has_budget_remaining() {
                break;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Wakes itself `n` times, counting its polls, then is ready.
    struct SelfWaking {
        left: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes it gets.
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_during_the_poll_become_repolls_not_task_wakes() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut quiet = std::pin::pin!(Quiet::new(SelfWaking {
            left: 3,
            polls: polls.clone(),
        }));
        assert!(quiet.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 4);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_still_yields() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut quiet = std::pin::pin!(Quiet::new(SelfWaking {
            left: usize::MAX,
            polls: polls.clone(),
        }));
        assert!(quiet.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), MAX_REPOLLS);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_wake_from_outside_the_poll_reaches_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let task = tokio::spawn(Quiet::new(rx));
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the task was never woken")
            .unwrap();
        assert_eq!(got.unwrap(), 7);
    }
}
