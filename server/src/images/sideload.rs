//! Streams an image from the leader's Docker engine into a node's: the body of `docker save`
//! (`GET /images/{name}/get`) becomes, chunk by chunk, the body of `docker load`
//! (`POST /images/load`) on the node. The export is read only as fast as the node takes it, so
//! the leader holds a few chunks, never the image. A counter between the two is the progress.
//!
//! A broken transfer leaves nothing that blocks the next: `docker load` refuses an archive that
//! ends early and keeps at most whole layers, which are content-addressed and simply found
//! again by the retry.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bollard::{Docker, query_parameters::ImportImageOptionsBuilder};
use bytes::Bytes;
use futures::StreamExt;

use crate::deployments::engine::{EngineError, classify};

/// The longest a node's engine may take to load an image once all of it was sent, and the
/// longest the leader's engine may take to start sending it (`docker save` may write the
/// image out before its first byte).
pub const LOAD_LIMIT: Duration = Duration::from_secs(600);
/// The client timeout of a transfer's two requests: bollard's covers a request until its
/// answer's headers, which `docker load` sends only once it has read the whole archive, so a
/// large image on a slow link needs hours. The stall check and [`LOAD_LIMIT`] bound it instead.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// How far a transfer is, shared between the stream and whoever reports it.
#[derive(Debug)]
pub struct Progress {
    bytes: AtomicU64,
    sent_all: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` when a byte last moved.
    moved_ms: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            bytes: AtomicU64::new(0),
            sent_all: AtomicBool::new(false),
            started: Instant::now(),
            moved_ms: AtomicU64::new(0),
        }
    }
}

impl Progress {
    /// Bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the whole archive was sent (the node may still be loading it).
    pub fn sent_all(&self) -> bool {
        self.sent_all.load(Ordering::Relaxed)
    }

    fn moved(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.moved_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether a byte has moved yet.
    fn started_moving(&self) -> bool {
        self.bytes() > 0
    }

    /// How long since a byte last moved.
    fn idle(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.moved_ms.load(Ordering::Relaxed)))
    }
}

/// Sends `reference` from `source` (the leader's engine) to `target` (node `node_id`'s). Fails
/// when no byte moves for `stall` while sending, or the node takes longer than [`LOAD_LIMIT`]
/// to load what it was sent. Returns what the node said it loaded.
pub async fn transfer(
    source: &Docker,
    target: &Docker,
    node_id: &str,
    reference: &str,
    progress: Arc<Progress>,
    stall: Duration,
) -> Result<Vec<String>, EngineError> {
    let counter = progress.clone();
    let finisher = progress.clone();
    let source = source.clone().with_timeout(REQUEST_LIMIT);
    let body = source
        .export_image(reference)
        .map(move |chunk| {
            if let Ok(b) = &chunk {
                counter.moved(b.len());
            }
            chunk
        })
        .chain(
            futures::stream::once(async move {
                finisher.sent_all.store(true, Ordering::Relaxed);
                None::<Result<Bytes, bollard::errors::Error>>
            })
            .filter_map(|x| async move { x }),
        );
    // The client's own timeout covers the request up to the answer's headers, which the node
    // sends only once it has read the archive: the stall check and LOAD_LIMIT bound it instead.
    let target = target.clone().with_timeout(REQUEST_LIMIT);
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut load = Box::pin(target.import_image_stream(opts, body, None));
    let mut loaded = Vec::new();
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut all_sent_at: Option<Instant> = None;
    loop {
        tokio::select! {
            item = load.next() => match item {
                None => break,
                Some(Ok(info)) => {
                    if let Some(line) = info.stream.as_deref().map(str::trim)
                        && let Some(name) = line
                            .strip_prefix("Loaded image: ")
                            .or_else(|| line.strip_prefix("Loaded image ID: "))
                    {
                        loaded.push(name.to_owned());
                    }
                }
                Some(Err(e)) => return Err(classify(node_id, "load the image", &e)),
            },
            _ = check.tick() => {
                if progress.sent_all() {
                    let since = *all_sent_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > LOAD_LIMIT {
                        return Err(EngineError::Unreachable(format!(
                            "node {node_id:?}'s Docker engine did not finish loading within {} s",
                            LOAD_LIMIT.as_secs()
                        )));
                    }
                } else if !progress.started_moving() {
                    if progress.idle() > LOAD_LIMIT {
                        return Err(EngineError::Unreachable(format!(
                            "the leader's Docker engine did not start sending the image within {} s",
                            LOAD_LIMIT.as_secs()
                        )));
                    }
                } else if progress.idle() > stall {
                    return Err(EngineError::Unreachable(format!(
                        "the transfer to node {node_id:?} stalled: no byte moved for {} s",
                        stall.as_secs()
                    )));
                }
            }
        }
    }
    if !progress.sent_all() {
        return Err(EngineError::Failed(format!(
            "node {node_id:?}'s Docker engine ended the load before the image was all sent"
        )));
    }
    Ok(loaded)
}
