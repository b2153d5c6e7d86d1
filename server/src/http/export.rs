//! Streamed CSV exports, with the API's authentication (a Bearer token or the session cookie)
//! and the viewer role:
//!
//! - `GET /export/readings.csv?experiment=<id or name>` — an experiment's readings, in time
//!   order; or `?node=<id>` (with optional `job`, `metric`) — a node's, by job, metric and time.
//!   Both take `from` and `to` (RFC 3339) to bound the time.
//! - `GET /export/logs.csv?experiment=…` or `?node=…&job=…` — job log lines, oldest first.
//! - `GET /export/events.csv?experiment=…` — what people did to the experiment, its nodes and
//!   their jobs (the audit log), oldest first.
//!
//! Add `gzip=true` for a `.csv.gz` file. Every file has a header row and ISO-8601 UTC times with
//! milliseconds. Rows are read a page at a time by their sort key (one index range per page) and
//! written to the response as they come, so an export of any size starts at once and uses the
//! same memory; it has no length known in advance, so a browser shows the bytes received.

use std::{collections::HashMap, io::Write};

use axum::{
    body::{Body, Bytes},
    extract::{Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use flate2::{Compression, write::GzEncoder};
use serde::Deserialize;

use super::{
    HttpState,
    caller::{caller, caller_parts, error_response},
};
use crate::{
    AppState,
    access::Role,
    error::{ApiError, ApiResult},
    telemetry::service::Selection,
};

/// Rows read per page.
pub const PAGE: u64 = 5_000;

/// What an export asks for.
#[derive(Debug, Deserialize, Default)]
pub struct ExportQuery {
    experiment: Option<String>,
    node: Option<String>,
    job: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    gzip: bool,
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). Text that a
/// spreadsheet would run as a formula (`=`, `+`, `@`, or `-` not starting a number) gets a
/// leading `'`, so opening an export never runs what a node or a user wrote.
fn field(out: &mut String, s: &str) {
    let formula = s.starts_with(['=', '+', '@', '\t', '\r'])
        || (s.starts_with('-') && s.parse::<f64>().is_err());
    let owned;
    let s = if formula {
        owned = format!("'{s}");
        owned.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn row(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push('\n');
}

fn time_arg(name: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| {
                    ApiError::BadRequest(format!(
                        "{name}={s:?} is not an RFC 3339 time (like 2026-12-02T10:00:00Z): {e}"
                    ))
                })
        })
        .transpose()
}

/// Turns pages of CSV text into the response body's chunks, gzipped or not.
struct Sink {
    gz: Option<GzEncoder<Vec<u8>>>,
}

impl Sink {
    fn chunk(&mut self, text: String) -> Bytes {
        match &mut self.gz {
            None => Bytes::from(text),
            Some(gz) => {
                // Writing into a Vec cannot fail.
                let _ = gz.write_all(text.as_bytes());
                let _ = gz.flush();
                Bytes::from(std::mem::take(gz.get_mut()))
            }
        }
    }

    fn finish(&mut self) -> Bytes {
        match self.gz.take() {
            None => Bytes::new(),
            Some(gz) => Bytes::from(gz.finish().unwrap_or_default()),
        }
    }
}

/// Where the rows of an export go: CSV text in, response chunks out through a bounded channel
/// (a client that reads slowly holds the reader back; one that leaves stops it).
pub struct Out {
    sink: Sink,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    text: String,
}

impl Out {
    /// Adds one row.
    fn row(&mut self, fields: &[&str]) {
        row(&mut self.text, fields);
    }

    /// Sends the rows added so far; `false` when the client has gone.
    async fn flush(&mut self) -> bool {
        let text = std::mem::take(&mut self.text);
        let bytes = self.sink.chunk(text);
        bytes.is_empty() || self.tx.send(Ok(bytes)).await.is_ok()
    }
}

/// A streamed CSV response named `name`, with `header_row`, whose rows `produce` writes (page by
/// page, flushing after each). An error mid-way ends the file early and is logged: the status
/// line has gone by then, so the body ends with an error and the download shows as failed.
fn stream<F, Fut>(name: &str, gzip: bool, header_row: &[&str], produce: F) -> Response
where
    F: FnOnce(Out) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (Out, ApiResult<()>)> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut out = Out {
        sink: Sink {
            gz: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
        },
        tx,
        text: String::new(),
    };
    out.row(header_row);
    let what = name.to_owned();
    tokio::spawn(async move {
        let (mut out, result) = produce(out).await;
        match result {
            Ok(()) => {
                if out.flush().await {
                    let end = out.sink.finish();
                    if !end.is_empty() {
                        let _ = out.tx.send(Ok(end)).await;
                    }
                }
            }
            Err(e) => {
                e.log_if_internal("a CSV export");
                tracing::warn!(export = what, error = e.log_message(), "export ended early");
                let _ = out
                    .tx
                    .send(Err(std::io::Error::other(e.public_message())))
                    .await;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    let file = if gzip {
        format!("{name}.csv.gz")
    } else {
        format!("{name}.csv")
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if gzip {
            "application/gzip"
        } else {
            "text/csv; charset=utf-8"
        }),
    );
    if gzip {
        // Already compressed: the compression layer leaves a response with an encoding alone.
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A file name made of `parts`, with only characters safe in a header and on every system.
fn file_name(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let safe: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if safe.is_empty() {
        "export".into()
    } else {
        safe
    }
}

/// The caller, who must be at least a viewer; the refusal as a response otherwise.
async fn viewer(
    app: &AppState,
    parts: (axum::http::HeaderMap, Option<std::net::IpAddr>),
) -> Result<(), Response> {
    let (principal, _) = caller(app, parts).await?;
    match principal {
        None => Err(error_response(&ApiError::Unauthenticated(
            "log in or send an API token".into(),
        ))),
        Some(p) if p.role >= Role::Viewer => Ok(()),
        Some(p) => Err(error_response(&ApiError::Forbidden(format!(
            "this needs the viewer role; you have {}",
            p.role.as_str()
        )))),
    }
}

/// Runs `export` for a caller who is at least a viewer; any refusal as a response.
async fn guarded<F, Fut>(s: HttpState, q: ExportQuery, req: Request, export: F) -> Response
where
    F: FnOnce(AppState, ExportQuery) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Response>>,
{
    let parts = caller_parts(&req);
    drop(req);
    if let Err(r) = viewer(&s.app, parts).await {
        return r;
    }
    export(s.app, q)
        .await
        .unwrap_or_else(|e| error_response(&e))
}

/// Experiment names by id, for the `experiment` column.
struct Names(HashMap<String, String>);

impl Names {
    async fn load(app: &AppState) -> ApiResult<Names> {
        Ok(Names(
            app.experiments
                .list(false)
                .await?
                .into_iter()
                .map(|e| (e.id, e.name))
                .collect(),
        ))
    }

    /// The name of the experiment `id` names (the id itself if it is gone; empty for none).
    fn of<'a>(&'a self, id: &'a Option<String>) -> &'a str {
        id.as_deref()
            .map(|id| self.0.get(id).map_or(id, String::as_str))
            .unwrap_or_default()
    }
}

/// The experiment an export is of (by id or name), or `None` for a node's; refused when it
/// names neither.
async fn subject(app: &AppState, q: &ExportQuery) -> ApiResult<Option<entity::experiment::Model>> {
    let experiment = match &q.experiment {
        Some(e) => Some(app.experiments.find(e).await?),
        None => None,
    };
    if experiment.is_none() && q.node.is_none() {
        return Err(ApiError::BadRequest(
            "name an experiment (experiment=<id or name>) or a node (node=<id>) to export".into(),
        ));
    }
    Ok(experiment)
}

/// `GET /export/readings.csv`.
pub async fn readings(
    State(s): State<HttpState>,
    Query(q): Query<ExportQuery>,
    req: Request,
) -> Response {
    guarded(s, q, req, readings_export).await
}

async fn readings_export(app: AppState, q: ExportQuery) -> ApiResult<Response> {
    let range = (time_arg("from", &q.from)?, time_arg("to", &q.to)?);
    let experiment = subject(&app, &q).await?;
    // A removed node's readings stay, and export: unknown is a node with neither.
    if let Some(n) = &q.node
        && app.nodes.get(n).await?.is_none()
        && app.telemetry.node_series(n, None, None).await?.is_empty()
    {
        return Err(ApiError::NotFound(format!("node {n:?}")));
    }
    let names = Names::load(&app).await?;
    let name = match &experiment {
        Some(e) => file_name(&["readings", &e.name]),
        None => file_name(&["readings", q.node.as_deref().unwrap_or_default()]),
    };
    let experiment_id = experiment.map(|e| e.id);
    Ok(stream(
        &name,
        q.gzip,
        &[
            "time",
            "node_time",
            "node",
            "job",
            "metric",
            "value",
            "unit",
            "experiment",
        ],
        move |mut out| async move {
            // An experiment's readings in time order; a node's series by series, each in time
            // order: every page one index range.
            let series: Vec<(Option<String>, Option<String>)> = if experiment_id.is_some() {
                vec![(q.job.clone(), q.metric.clone())]
            } else {
                match app
                    .telemetry
                    .node_series(
                        q.node.as_deref().unwrap_or_default(),
                        q.job.as_deref(),
                        q.metric.as_deref(),
                    )
                    .await
                {
                    Ok(s) => s.into_iter().map(|(j, m)| (Some(j), Some(m))).collect(),
                    Err(e) => return (out, Err(e)),
                }
            };
            for (job, metric) in &series {
                let of = Selection {
                    node_id: q.node.as_deref(),
                    experiment_id: experiment_id.as_deref(),
                    job: job.as_deref(),
                    metric: metric.as_deref(),
                };
                let mut after: Option<(i64, i64)> = None;
                loop {
                    let page = match app.telemetry.export_page(&of, range, after, PAGE).await {
                        Ok(p) => p,
                        Err(e) => return (out, Err(e)),
                    };
                    for r in &page {
                        let exp = names.of(&r.experiment_id);
                        out.row(&[
                            &iso(r.time_ms),
                            &iso(r.node_time_ms),
                            &r.node_id,
                            &r.job,
                            &r.metric,
                            &r.value.to_string(),
                            r.unit.as_deref().unwrap_or_default(),
                            exp,
                        ]);
                    }
                    if !out.flush().await {
                        return (out, Ok(()));
                    }
                    match page.last() {
                        Some(last) if page.len() as u64 == PAGE => {
                            after = Some((last.time_ms, last.id));
                        }
                        _ => break,
                    }
                }
            }
            (out, Ok(()))
        },
    ))
}

/// `GET /export/logs.csv`.
pub async fn logs(
    State(s): State<HttpState>,
    Query(q): Query<ExportQuery>,
    req: Request,
) -> Response {
    guarded(s, q, req, logs_export).await
}

async fn logs_export(app: AppState, q: ExportQuery) -> ApiResult<Response> {
    let experiment = subject(&app, &q).await?;
    let names = Names::load(&app).await?;
    let name = match &experiment {
        Some(e) => file_name(&["logs", &e.name]),
        None => file_name(&[
            "logs",
            q.node.as_deref().unwrap_or_default(),
            q.job.as_deref().unwrap_or_default(),
        ]),
    };
    let experiment_id = experiment.map(|e| e.id);
    Ok(stream(
        &name,
        q.gzip,
        &["time", "node", "job", "stream", "line", "experiment"],
        move |mut out| async move {
            let mut after = 0i64;
            loop {
                let page = match app
                    .telemetry
                    .log_page(
                        q.node.as_deref(),
                        q.job.as_deref(),
                        experiment_id.as_deref(),
                        after,
                        PAGE,
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return (out, Err(e)),
                };
                for l in &page {
                    let exp = names.of(&l.experiment_id);
                    out.row(&[&iso(l.time_ms), &l.node_id, &l.job, &l.stream, &l.line, exp]);
                }
                if !out.flush().await {
                    return (out, Ok(()));
                }
                match page.last() {
                    Some(last) if page.len() as u64 == PAGE => after = last.id,
                    _ => return (out, Ok(())),
                }
            }
        },
    ))
}

/// `GET /export/events.csv`.
pub async fn events(
    State(s): State<HttpState>,
    Query(q): Query<ExportQuery>,
    req: Request,
) -> Response {
    guarded(s, q, req, events_export).await
}

async fn events_export(app: AppState, q: ExportQuery) -> ApiResult<Response> {
    let Some(e) = &q.experiment else {
        return Err(ApiError::BadRequest(
            "name the experiment (experiment=<id or name>) whose events to export".into(),
        ));
    };
    let e = app.experiments.find(e).await?;
    let spans: Vec<(String, i64, Option<i64>)> = app
        .experiments
        .members(&e.id, false)
        .await?
        .into_iter()
        .map(|m| (m.node_id, m.from_ms, m.until_ms))
        .collect();
    let names = app.experiments.names(&e.id).await?;
    Ok(stream(
        &file_name(&["events", &e.name]),
        q.gzip,
        &["time", "actor", "action", "target", "outcome", "detail"],
        move |mut out| async move {
            let mut after = 0i64;
            loop {
                let page = match app
                    .audit
                    .for_experiment(
                        &names,
                        &spans,
                        (None, Some(after)),
                        crate::access::audit::MAX_PAGE,
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return (out, Err(e)),
                };
                for a in &page {
                    out.row(&[
                        &a.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                        &a.actor,
                        &a.action,
                        a.target.as_deref().unwrap_or_default(),
                        &a.outcome,
                        a.detail.as_deref().unwrap_or_default(),
                    ]);
                }
                if !out.flush().await {
                    return (out, Ok(()));
                }
                match page.last() {
                    Some(last) if page.len() as u64 == crate::access::audit::MAX_PAGE => {
                        after = last.id;
                    }
                    _ => return (out, Ok(())),
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        let mut s = String::new();
        row(&mut s, &["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(s, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\n");
        let mut s = String::new();
        row(&mut s, &["=1+2", "-3.5", "-rm", "@x"]);
        assert_eq!(s, "'=1+2,-3.5,'-rm,'@x\n");
    }

    #[test]
    fn times_are_iso_8601_utc_with_milliseconds() {
        assert_eq!(iso(1_764_672_000_123), "2025-12-02T10:40:00.123Z");
    }

    #[test]
    fn gzip_chunks_make_one_valid_file() {
        let mut sink = Sink {
            gz: Some(GzEncoder::new(Vec::new(), Compression::fast())),
        };
        let mut all = Vec::new();
        all.extend_from_slice(&sink.chunk("a,b\n".into()));
        all.extend_from_slice(&sink.chunk("1,2\n".into()));
        all.extend_from_slice(&sink.finish());
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&all[..]), &mut text)
            .unwrap();
        assert_eq!(text, "a,b\n1,2\n");
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            file_name(&["readings", "OD run #2/ä"]),
            "readings-OD_run__2__"
        );
    }
}
