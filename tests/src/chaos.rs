//! A TCP proxy the tests put in front of a service (a Docker engine's socket, a broker) to
//! break the link on purpose: limit its rate, cut every live connection, or cut a connection
//! once the client has sent a given number of bytes through it. Between faults it passes bytes
//! untouched in both directions.

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
        let ctl = Arc::new(Ctl {
            rate: AtomicU64::new(0),
            cut_after: AtomicU64::new(u64::MAX),
            cuts,
            sent: AtomicU64::new(0),
        });
        let c = ctl.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let ctl = c.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    match upstream {
                        Upstream::Tcp(a) => {
                            if let Ok(s) = TcpStream::connect(a).await {
                                pipe(client, s, ctl).await;
                            }
                        }
                        Upstream::Unix(p) => {
                            if let Ok(s) = UnixStream::connect(p).await {
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

    /// Cuts every live connection now; new ones pass.
    pub fn cut_all(&self) {
        self.ctl.cuts.send_modify(|n| *n += 1);
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
        let _ = tokio::io::copy(&mut service_rx, &mut client_tx).await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = cut.changed() => {}
    }
    // Dropping both halves of both sockets closes them.
}
