//! Live data from an instance's container, straight from its node's engine: logs (tail, since,
//! follow), stats (CPU, memory, network, block I/O) and commands run in it. Each subscriber has
//! its own engine stream; a slow subscriber holds back only its own (HTTP back-pressure).

use std::time::Duration;

use bollard::{
    container::LogOutput,
    exec::{CreateExecOptions, StartExecResults},
    models::ContainerStatsResponse,
    query_parameters::{LogsOptionsBuilder, StatsOptionsBuilder},
};
use futures::{Stream, StreamExt};

use super::{Deployments, engine::Engine};
use crate::{
    error::{ApiError, ApiResult},
    nodes::docker::DockerAccess,
};

/// How often a follower whose container's log ended looks at the instance again.
const REFOLLOW_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two looks at a stopped instance.
const REFOLLOW_MAX: Duration = Duration::from_secs(10);
/// Lines a follower sends from a replacement container's start at most.
const REFOLLOW_TAIL: u32 = 10_000;

/// Longest log line sent; the rest is cut.
pub const MAX_LINE: usize = 16 * 1024;
/// Most output an exec returns, per stream.
pub const MAX_EXEC_OUTPUT: usize = 1024 * 1024;

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "ContainerLogStream")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Trellis's own words in a followed log: which container it follows now.
    Trellis,
}

/// One line of a container's log.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct ContainerLogLine {
    /// When Docker received it.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Which stream.
    pub stream: LogStream,
    /// The line, without its newline (cut at 16 KiB).
    pub line: String,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct ContainerStats {
    /// When it was read.
    pub at: chrono::DateTime<chrono::Utc>,
    /// CPU use in % of one core (200 = two cores busy).
    pub cpu_percent: f64,
    /// Memory in use, bytes (page cache not counted).
    pub memory_bytes: f64,
    /// The memory limit, bytes.
    pub memory_limit: f64,
    /// Bytes received over the network, in total.
    pub net_rx: f64,
    /// Bytes sent.
    pub net_tx: f64,
    /// Bytes read from block devices.
    pub block_read: f64,
    /// Bytes written.
    pub block_write: f64,
}

/// What a command run in a container gave.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct ExecResult {
    /// Its exit code.
    pub exit_code: i64,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Whether output was cut at 1 MiB.
    pub truncated: bool,
}

impl Deployments {
    /// The engine and container of one instance.
    pub async fn instance_container(
        &self,
        access: &DockerAccess,
        deployment_id: &str,
        node_id: &str,
    ) -> ApiResult<(Engine, String)> {
        let i = self.instance(deployment_id, node_id).await?;
        let container = i.container_id.ok_or_else(|| {
            ApiError::Conflict(format!(
                "the instance on node {node_id:?} has no container yet"
            ))
        })?;
        let node = entity::node::Entity::find_by_id(node_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node {node_id:?}")))?;
        let (docker, _) = access.connect(&node).await?;
        let engine = Engine::new(node_id, docker, crate::nodes::docker::DOCKER_TIMEOUT);
        Ok((engine, container))
    }
}

use sea_orm::EntityTrait;

fn split_timestamp(text: &str) -> (chrono::DateTime<chrono::Utc>, &str) {
    match text.split_once(' ') {
        Some((t, rest)) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(at) => (at.with_timezone(&chrono::Utc), rest),
            Err(_) => (chrono::Utc::now(), text),
        },
        None => (chrono::Utc::now(), text),
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The container's log: the last `tail` lines (from `since` when given), then, with `follow`,
/// every new line.
pub fn logs(
    engine: &Engine,
    container: &str,
    tail: u32,
    since: Option<chrono::DateTime<chrono::Utc>>,
    follow: bool,
) -> impl Stream<Item = ContainerLogLine> + Send + 'static {
    let mut opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .follow(follow)
        .tail(&if since.is_some() {
            "all".to_owned()
        } else {
            tail.to_string()
        });
    if let Some(s) = since {
        // Docker takes whole seconds: ask from the second before and drop what is earlier.
        opts = opts.since(i32::try_from(s.timestamp()).unwrap_or(0));
    }
    let stream = engine.docker().logs(container, Some(opts.build()));
    stream
        .take_while(|item| futures::future::ready(item.is_ok()))
        .filter_map(move |item| {
            let line = item.ok().and_then(|out| {
                let (kind, bytes) = match out {
                    LogOutput::StdErr { message } => (LogStream::Stderr, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (LogStream::Stdout, message)
                    }
                    LogOutput::StdIn { .. } => return None,
                };
                let text = String::from_utf8_lossy(&bytes);
                let (at, rest) = split_timestamp(text.trim_end_matches(['\n', '\r']));
                if since.is_some_and(|s| at < s) {
                    return None;
                }
                Some(ContainerLogLine {
                    at,
                    stream: kind,
                    line: cut(rest.to_owned()),
                })
            });
            futures::future::ready(line)
        })
}

/// What a follower of an instance's log keeps between lines.
struct Follower {
    svc: Deployments,
    engine: Engine,
    deployment_id: String,
    node_id: String,
    container: String,
    /// The time of the last line sent, so a container that runs again is not repeated.
    last: Option<chrono::DateTime<chrono::Utc>>,
    inner: Option<futures::stream::BoxStream<'static, ContainerLogLine>>,
    /// How long until the next look at the instance: doubles (to [`REFOLLOW_MAX`]) while
    /// nothing changes, back to [`REFOLLOW_EVERY`] once a log flows again.
    wait: Duration,
}

/// An instance's log as [`logs`] gives it; with `follow`, it outlives the container: when the
/// log ends (the container stopped, crashed, or was replaced by a rollout, a rollback or a fix
/// of a change by hand), the instance is looked at again after [`REFOLLOW_EVERY`] (doubling to
/// [`REFOLLOW_MAX`] while nothing changes). A new container is followed from its first line,
/// after a `TRELLIS` line naming it; the same one running again is followed from where its log
/// stopped. It ends when the instance is gone (the deployment removed, or the node no longer a
/// target), or when the subscriber goes.
#[allow(clippy::too_many_arguments)]
pub fn follow_instance(
    svc: Deployments,
    engine: Engine,
    deployment_id: String,
    node_id: String,
    container: String,
    tail: u32,
    since: Option<chrono::DateTime<chrono::Utc>>,
    follow: bool,
) -> futures::stream::BoxStream<'static, ContainerLogLine> {
    let first = logs(&engine, &container, tail, since, follow).boxed();
    if !follow {
        return first;
    }
    let start = Follower {
        svc,
        engine,
        deployment_id,
        node_id,
        container,
        // Lines before the subscription (or its `since`) are never sent again on a restart.
        last: Some(since.unwrap_or_else(chrono::Utc::now)),
        inner: Some(first),
        wait: REFOLLOW_EVERY,
    };
    futures::stream::unfold(start, |mut f| async move {
        loop {
            if let Some(inner) = f.inner.as_mut() {
                if let Some(line) = inner.next().await {
                    f.last = Some(line.at);
                    f.wait = REFOLLOW_EVERY;
                    return Some((line, f));
                }
                f.inner = None;
            }
            tokio::time::sleep(f.wait).await;
            f.wait = (f.wait * 2).min(REFOLLOW_MAX);
            let i = match f.svc.instance(&f.deployment_id, &f.node_id).await {
                Ok(i) => i,
                Err(ApiError::NotFound(_)) => return None,
                // The database or the engine is away for a moment: look again.
                Err(_) => continue,
            };
            let Some(c) = i.container_id else { continue };
            if c != f.container {
                let note = ContainerLogLine {
                    at: chrono::Utc::now(),
                    stream: LogStream::Trellis,
                    line: format!(
                        "container {} ended; following its replacement {}{}",
                        short(&f.container),
                        short(&c),
                        i.observed_revision
                            .map(|r| format!(" (revision {r})"))
                            .unwrap_or_default()
                    ),
                };
                f.inner = Some(logs(&f.engine, &c, REFOLLOW_TAIL, None, true).boxed());
                f.container = c;
                f.last = None;
                f.wait = REFOLLOW_EVERY;
                return Some((note, f));
            }
            let running = matches!(
                f.engine.inspect(&c).await,
                Ok(Some(info)) if info.state.as_ref().and_then(|s| s.running) == Some(true)
            );
            if running {
                let last = f.last;
                f.inner = Some(
                    logs(&f.engine, &c, REFOLLOW_TAIL, last, true)
                        .filter(move |l| futures::future::ready(last.is_none_or(|t| l.at > t)))
                        .boxed(),
                );
            }
        }
    })
    .boxed()
}

/// A container id as `docker ps` shows it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[allow(clippy::cast_precision_loss)]
fn sample(prev: Option<&ContainerStatsResponse>, s: &ContainerStatsResponse) -> ContainerStats {
    let cpu = |x: &ContainerStatsResponse| {
        let c = x.cpu_stats.as_ref();
        (
            c.and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0) as f64,
            c.and_then(|c| c.system_cpu_usage).unwrap_or(0) as f64,
            f64::from(c.and_then(|c| c.online_cpus).unwrap_or(1)),
        )
    };
    let (total, system, cpus) = cpu(s);
    let cpu_percent = match prev.map(cpu) {
        Some((pt, ps, _)) if system > ps && total >= pt => {
            (total - pt) / (system - ps) * cpus * 100.0
        }
        _ => 0.0,
    };
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    // Page cache is not the container's own: cgroup v1 calls it cache, v2 inactive_file.
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| st.get("cache").or_else(|| st.get("inactive_file")).copied())
        .unwrap_or(0);
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s.networks.iter().flat_map(|m| m.values()) {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0u64, 0u64);
    for e in s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref())
        .into_iter()
        .flatten()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += e.value.unwrap_or(0),
            Some("write") => write += e.value.unwrap_or(0),
            _ => {}
        }
    }
    ContainerStats {
        at: chrono::Utc::now(),
        cpu_percent,
        memory_bytes: usage.saturating_sub(cache) as f64,
        memory_limit: mem.and_then(|m| m.limit).unwrap_or(0) as f64,
        net_rx: rx as f64,
        net_tx: tx as f64,
        block_read: read as f64,
        block_write: write as f64,
    }
}

/// The container's resource use, about once a second, while it runs.
pub fn stats(
    engine: &Engine,
    container: &str,
) -> impl Stream<Item = ContainerStats> + Send + 'static {
    let opts = StatsOptionsBuilder::default().stream(true).build();
    engine
        .docker()
        .stats(container, Some(opts))
        .take_while(|item| futures::future::ready(item.is_ok()))
        .scan(None::<ContainerStatsResponse>, |prev, item| {
            let out = item.ok().map(|s| {
                let out = sample(prev.as_ref(), &s);
                *prev = Some(s);
                out
            });
            futures::future::ready(out)
        })
}

/// Runs `command` in the container (no shell), for at most `timeout`.
pub async fn exec(
    engine: &Engine,
    container: &str,
    command: Vec<String>,
    timeout: Duration,
) -> ApiResult<ExecResult> {
    if command.is_empty() || command.len() > 256 {
        return Err(ApiError::BadRequest(
            "command: give the program and its arguments (at most 256)".into(),
        ));
    }
    let node = engine.node_id.clone();
    let unreachable = |e: bollard::errors::Error| {
        ApiError::Unavailable(super::engine::classify(&node, "run a command", &e).public())
    };
    let docker = engine.docker().clone();
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(command),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(unreachable)?;
    let run = async {
        let mut out = ExecResult {
            exit_code: -1,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
        };
        if let StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&created.id, None)
            .await
            .map_err(unreachable)?
        {
            while let Some(item) = output.next().await {
                let (buf, bytes) = match item.map_err(unreachable)? {
                    LogOutput::StdErr { message } => (&mut out.stderr, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (&mut out.stdout, message)
                    }
                    LogOutput::StdIn { .. } => continue,
                };
                if buf.len() + bytes.len() > MAX_EXEC_OUTPUT {
                    out.truncated = true;
                    continue;
                }
                buf.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(unreachable)?;
        out.exit_code = inspect.exit_code.unwrap_or(-1);
        Ok::<_, ApiError>(out)
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| {
        ApiError::Unavailable(format!(
            "the command did not end within {} s",
            timeout.as_secs()
        ))
    })?
}
