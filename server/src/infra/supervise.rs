//! Background loops that come back after a panic, and the test-only hook that makes one panic.
//!
//! [`supervise`] runs a loop built by a factory; when the loop panics (a bug), the panic is
//! logged and a new loop is built and started after a pause (1 s, doubling to 60 s while it
//! keeps panicking, back to 1 s after a run of a minute or more), so one bad
//! moment does not silently stop the leader's liveness sweep, retention or prune. A loop that
//! returns (at shutdown) is not restarted. [`supervise_owning`] does the same for a loop that owns
//! state it must keep across a restart (a channel's receiving end: the ingester's queue, the
//! reconciler's inbox and workers, the profile scheduler's wake-ups): the state lives behind a
//! lock the loop holds while it runs, and the panic releases it for the next loop. Only what the
//! loop had in hand when it panicked is lost, and each such loop says in its `//!` why that
//! converges anyway.
//!
//! [`panic_point`] is compiled into debug builds only (the test command's binaries; the
//! release build users run has none) and fires only when `TRELLIS_TEST_PANIC` names its point,
//! once per point per process.

use std::{future::Future, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

/// A run this long before its panic resets the pause before the next start to 1 s.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs `make()`'s loop until it returns or `shutdown`; after a panic, starts a new one.
pub fn supervise<F, Fut>(
    name: &'static str,
    shutdown: CancellationToken,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        loop {
            let started = tokio::time::Instant::now();
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    // A loop that ran a good while before this panic starts again soon.
                    if started.elapsed() >= HEALTHY_RUN {
                        pause = Duration::from_secs(1);
                    }
                    tracing::error!(
                        background_loop = name,
                        restart_in_s = pause.as_secs(),
                        "a background loop panicked: it is started again"
                    );
                }
                Err(_) => return,
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(60));
            tracing::info!(background_loop = name, "background loop started again");
        }
    })
}

/// Like [`supervise`], for a loop that owns `state`: each run gets the state (behind its lock),
/// so what waits in a channel the state holds outlives a panic of the loop.
pub fn supervise_owning<S, F, Fut>(
    name: &'static str,
    shutdown: CancellationToken,
    state: S,
    run: F,
) -> tokio::task::JoinHandle<()>
where
    S: Send + 'static,
    F: Fn(tokio::sync::OwnedMutexGuard<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let state = Arc::new(tokio::sync::Mutex::new(state));
    let run = Arc::new(run);
    supervise(name, shutdown, move || {
        let (state, run) = (state.clone(), run.clone());
        async move {
            // The previous run's guard went with its panic (tokio's lock is not poisoned).
            let guard = state.lock_owned().await;
            run(guard).await;
        }
    })
}

/// Panics here, once, when `TRELLIS_TEST_PANIC` (a comma-separated list) names `point`. Debug
/// builds only: a test's way to prove that a panic is contained.
#[cfg(debug_assertions)]
pub fn panic_point(point: &str) {
    use std::{collections::HashSet, sync::Mutex};
    static FIRED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Ok(wanted) = std::env::var("TRELLIS_TEST_PANIC") else {
        return;
    };
    if !wanted.split(',').any(|p| p.trim() == point) {
        return;
    }
    let first = FIRED
        .lock()
        .map(|mut f| f.get_or_insert_with(HashSet::new).insert(point.to_owned()))
        .unwrap_or(false);
    if first {
        panic!("test hook: {point} panics (TRELLIS_TEST_PANIC)");
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
pub fn panic_point(_point: &str) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    #[tokio::test]
    async fn a_loop_that_panics_is_started_again_and_one_that_returns_is_not() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = supervise("test", CancellationToken::new(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("run {n} fails");
                }
            }
        });
        handle
            .await
            .expect("the supervisor ends when its loop returns");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_loop_that_owns_a_channel_gets_it_back_after_a_panic() {
        let (tx, rx) = tokio::sync::mpsc::channel::<u32>(8);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        for n in 1..=4 {
            tx.send(n).await.expect("room");
        }
        drop(tx);
        let handle = supervise_owning("owner", CancellationToken::new(), rx, move |mut rx| {
            let seen = seen_tx.clone();
            async move {
                while let Some(n) = rx.recv().await {
                    // Message 2 is a bug's moment: lost with the loop that held it.
                    assert_ne!(n, 2, "test panic on message 2");
                    let _ = seen.send(n);
                }
            }
        });
        handle.await.expect("ends when the channel closes");
        let mut got = Vec::new();
        while let Ok(n) = seen.try_recv() {
            got.push(n);
        }
        assert_eq!(
            got,
            [1, 3, 4],
            "the restarted loop read on from where the first stopped"
        );
    }
}
