//! A TCP proxy the tests put in front of a service (a Docker engine's socket, a broker,
//! Postgres) to break the link on purpose: limit its rate, delay every piece both ways, stall
//! (accept and never answer; live connections hold their bytes), hold only the service's replies
//! (what the client sends still arrives), refuse new connections, cut every live connection, or cut a connection once the client has sent a given number of bytes
//! through it. Between faults it passes bytes untouched in both directions.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixStream},
    sync::watch,
    task::JoinHandle,
};

/// What the proxy forwards to.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

#[derive(Debug)]
struct Ctl {
    /// Client-to-service bytes per second; 0 for no limit.
    rate: AtomicU64,
    /// A connection is cut once its client has sent this many bytes; `u64::MAX` for never.
    cut_after: AtomicU64,
    /// Bumped to cut every live connection.
    cuts: watch::Sender<u64>,
    /// Client-to-service bytes through all connections so far.
    sent: AtomicU64,
    /// Each piece, either way, waits this long, milliseconds.
    delay_ms: AtomicU64,
    /// While true, nothing moves and new connections wait unanswered.
    stalled: watch::Sender<bool>,
    /// New connections are closed at once.
    refuse: std::sync::atomic::AtomicBool,
    /// While true, what the service sends waits in the proxy (lost if the connection is cut).
    replies_held: watch::Sender<bool>,
    /// When each connection reached the service.
    joined: std::sync::Mutex<Vec<std::time::Instant>>,
}

impl Ctl {
    fn joined_now(&self) {
        self.joined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::time::Instant::now());
    }

    /// Waits while the proxy is stalled, then for the delay.
    async fn hold(&self) {
        let mut stalled = self.stalled.subscribe();
        let _ = stalled.wait_for(|s| !*s).await;
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// The proxy; dropping it stops it and cuts its connections.
pub struct Chaos {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    ctl: Arc<Ctl>,
    task: JoinHandle<()>,
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.cut_all();
        self.task.abort();
    }
}

impl Chaos {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`.
    pub async fn start(upstream: Upstream) -> Chaos {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a port for the proxy");
        let port = listener.local_addr().expect("its address").port();
        let (cuts, _) = watch::channel(0);
        let (stalled, _) = watch::channel(false);
        let (replies_held, _) = watch::channel(false);
        let ctl = Arc::new(Ctl {
            rate: AtomicU64::new(0),
            cut_after: AtomicU64::new(u64::MAX),
            cuts,
            sent: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            stalled,
            refuse: std::sync::atomic::AtomicBool::new(false),
            replies_held,
            joined: std::sync::Mutex::new(Vec::new()),
        });
        let c = ctl.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if c.refuse.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let ctl = c.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    // Stalled: accepted, and never answered until the stall ends.
                    ctl.hold().await;
                    match upstream {
                        Upstream::Tcp(a) => {
                            if let Ok(s) = TcpStream::connect(a).await {
                                ctl.joined_now();
                                pipe(client, s, ctl).await;
                            }
                        }
                        Upstream::Unix(p) => {
                            if let Ok(s) = UnixStream::connect(p).await {
                                ctl.joined_now();
                                pipe(client, s, ctl).await;
                            }
                        }
                    }
                });
            }
        });
        Chaos { port, ctl, task }
    }

    /// Limits what clients send to `bytes_per_sec` (0: no limit).
    pub fn rate(&self, bytes_per_sec: u64) {
        self.ctl.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Cuts each connection once its client has sent `n` bytes through it (`None`: never).
    pub fn cut_after(&self, n: Option<u64>) {
        self.ctl
            .cut_after
            .store(n.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Delays every piece of data, either way, by `d` (zero: no delay).
    pub fn delay(&self, d: Duration) {
        self.ctl.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Stalls (`true`): new connections are accepted and never answered, live ones hold their
    /// bytes, both ways; `false` lets everything move again, nothing lost.
    pub fn stall(&self, on: bool) {
        self.ctl.stalled.send_replace(on);
    }

    /// Holds (`true`) what the service sends on every connection, while what clients send still
    /// passes: a request arrives and is acted on, its answer (an MQTT PUBACK, a result) does not
    /// come back. `false` releases what is held; [`Chaos::cut_all`] loses it.
    pub fn hold_replies(&self, on: bool) {
        self.ctl.replies_held.send_replace(on);
    }

    /// Refuses (`true`) new connections: each is closed as soon as it is accepted.
    pub fn refuse(&self, on: bool) {
        self.ctl.refuse.store(on, Ordering::Relaxed);
    }

    /// Cuts every live connection now; new ones pass.
    pub fn cut_all(&self) {
        self.ctl.cuts.send_modify(|n| *n += 1);
    }

    /// When each connection so far reached the service (connections the service refused, or
    /// the proxy refused, are not counted).
    pub fn joined(&self) -> Vec<std::time::Instant> {
        self.ctl
            .joined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bytes clients have sent through the proxy so far.
    pub fn sent(&self) -> u64 {
        self.ctl.sent.load(Ordering::Relaxed)
    }
}

async fn pipe<S>(client: TcpStream, service: S, ctl: Arc<Ctl>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut cut = ctl.cuts.subscribe();
    cut.mark_unchanged();
    let generation = *cut.borrow();
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut service_rx, mut service_tx) = tokio::io::split(service);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            ctl.hold().await;
            let limit = ctl.cut_after.load(Ordering::Relaxed);
            let allowed = usize::try_from(limit.saturating_sub(sent)).unwrap_or(usize::MAX);
            let n_pass = n.min(allowed);
            if n_pass > 0 && service_tx.write_all(&buf[..n_pass]).await.is_err() {
                return;
            }
            sent += n_pass as u64;
            ctl.sent.fetch_add(n_pass as u64, Ordering::Relaxed);
            if n_pass < n {
                // Over the cut mark: the connection goes.
                return;
            }
            let rate = ctl.rate.load(Ordering::Relaxed);
            if rate > 0 {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match service_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            ctl.hold().await;
            let mut held = ctl.replies_held.subscribe();
            let _ = held.wait_for(|h| !*h).await;
            // Released by a cut: what was held goes with the connection.
            if *ctl.cuts.borrow() != generation {
                return;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = cut.changed() => {}
    }
    // Dropping both halves of both sockets closes them.
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo service on a free port.
    async fn echo() -> std::net::SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(port: u16, within: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut got = [0u8; 4];
        match tokio::time::timeout(within, s.read_exact(&mut got)).await {
            Ok(Ok(_)) if &got == b"ping" => Some(started.elapsed()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn delay_stall_and_refuse_do_what_they_say() {
        let proxy = Chaos::start(Upstream::Tcp(echo().await)).await;
        let second = Duration::from_secs(1);
        assert!(round_trip(proxy.port, second).await.is_some(), "passes");
        proxy.delay(Duration::from_millis(150));
        let took = round_trip(proxy.port, second)
            .await
            .expect("delayed, not lost");
        assert!(took >= Duration::from_millis(300), "both ways: {took:?}");
        proxy.delay(Duration::ZERO);
        // Stalled: no answer; once it ends, the held bytes arrive.
        proxy.stall(true);
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .expect("accepted");
        s.write_all(b"ping").await.expect("send");
        let mut got = [0u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(400), s.read_exact(&mut got))
                .await
                .is_err(),
            "no answer while stalled"
        );
        proxy.stall(false);
        tokio::time::timeout(second, s.read_exact(&mut got))
            .await
            .expect("answered after the stall")
            .expect("read");
        assert_eq!(&got, b"ping");
        // Replies held: the request arrives, its answer waits until released.
        proxy.hold_replies(true);
        s.write_all(b"pong").await.expect("send");
        assert!(
            tokio::time::timeout(Duration::from_millis(400), s.read_exact(&mut got))
                .await
                .is_err(),
            "no answer while replies are held"
        );
        proxy.hold_replies(false);
        tokio::time::timeout(second, s.read_exact(&mut got))
            .await
            .expect("answered once released")
            .expect("read");
        assert_eq!(&got, b"pong");
        // Refused: closed at once.
        proxy.refuse(true);
        assert!(round_trip(proxy.port, second).await.is_none(), "refused");
        proxy.refuse(false);
        assert!(
            round_trip(proxy.port, second).await.is_some(),
            "passes again"
        );
    }
}
