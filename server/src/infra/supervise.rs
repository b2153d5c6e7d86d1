//! Background loops that come back after a panic, and the test-only hook that makes one panic.
//!
//! [`supervise`] runs a loop built by a factory; when the loop panics (a bug), the panic is
//! logged and a new loop is built and started after a pause (1 s, doubling to 60 s), so one bad
//! moment does not silently stop the leader's liveness sweep, retention or prune. A loop that
//! returns (at shutdown) is not restarted. Loops that own a channel's receiving end (the
//! ingester, the reconciler) are not supervised this way: their input cannot be handed on.
//!
//! [`panic_point`] is compiled into debug builds only (the test command's binaries; the
//! release build users run has none) and fires only when `TRELLIS_TEST_PANIC` names its point,
//! once per point per process.

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

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
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
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
}
