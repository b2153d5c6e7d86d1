//! The experiment page's live charts: one [`Chart`] per metric, one line per node and job,
//! over the range the [`RangePicker`] (or a drag) chooses, with the page's notes and events
//! marked on the time axis.
//!
//! - Each series is loaded downsampled (`series { buckets }`, at most [`POINTS`] a line, each
//!   bucket drawn at its middle), then `liveReadings(experimentId, fps: 4)` appends each new
//!   reading to its line: a new point redraws that line's path alone.
//! - The series are loaded again when the range changes, after a (re)connect, when the feed
//!   says it left readings out (`skipped`) or fell behind (`resync`), when a reading belongs to
//!   a series the page does not have yet, and when a line has grown past [`MAX_POINTS`] (so it
//!   is downsampled again); at most once every [`RELOAD_GAP_MS`] for the feed's reasons.
//!   Readings that arrive while a load is under way are kept and appended after it, and so are
//!   those of a series the page did not have (the leader sends most readings before it commits
//!   them, so the load they start may not hold them yet).

use futures::StreamExt;
use leptos::prelude::*;
use serde_json::Value;

use crate::{
    Cluster,
    api::{
        experiments::{self, LiveReading},
        ws::{self, Feed},
    },
    components::{
        Alert,
        chart::{Chart, Line, Mark, PALETTE, Range, RangePicker},
        derive,
    },
};

/// Buckets a line is loaded with: about one per two pixels of a chart as wide as the page.
const POINTS: i64 = 480;
/// A line this long (live points added to its buckets) is loaded again, downsampled.
const MAX_POINTS: usize = 4 * POINTS as usize;
/// The shortest wait between two loads the feed asks for.
const RELOAD_GAP_MS: f64 = 3_000.0;
const HOUR: f64 = 3_600_000.0;

/// One stored series and its line's points.
#[derive(Clone, PartialEq)]
struct Series {
    metric: String,
    unit: Option<String>,
    node_id: String,
    job: String,
    points: RwSignal<Vec<(f64, f64)>>,
}

impl Series {
    fn is(&self, metric: &str, node_id: &str, job: &str) -> bool {
        self.metric == metric && self.node_id == node_id && self.job == job
    }
}

/// One chart: its metric, unit, and lines with their colours.
type ChartOf = (String, Option<String>, Vec<(Series, &'static str)>);

/// What the loads and the feed share. `Copy`, so tasks and handlers can hold it.
#[derive(Clone, Copy)]
struct State {
    id: StoredValue<String>,
    range: RwSignal<Range>,
    series: RwSignal<Vec<Series>>,
    /// Readings the feed brought while a load was under way (`None` when none is).
    held: StoredValue<Option<Vec<LiveReading>>>,
    /// When the feed last asked for a load (ms since the epoch).
    last_reload: StoredValue<f64>,
    error: RwSignal<Option<String>>,
}

/// An RFC 3339 time for the API.
fn iso(ms: f64) -> String {
    String::from(js_sys::Date::new(&ms.into()).to_iso_string())
}

impl State {
    /// Loads every series over the range shown.
    async fn load(self) {
        let now = js_sys::Date::now();
        let (from, to) = match self.range.get_untracked() {
            Range::Last(span) => (Some(iso(now - span)), None),
            Range::All => (None, None),
            Range::Zoom(a, b) => (Some(iso(a)), Some(iso(b))),
        };
        self.held.update_value(|h| {
            h.get_or_insert_with(Vec::new);
        });
        let vars = experiments::experiment_series::Variables {
            id: self.id.get_value(),
            from,
            to,
            points: POINTS,
        };
        let answer = experiments::series(vars).await;
        // Another load may have taken them already; none when the page is gone.
        let Some(held) = self.held.try_update_value(Option::take) else {
            return;
        };
        let held = held.unwrap_or_default();
        let list = match answer {
            Ok(list) => list,
            Err(e) => {
                self.error.try_set(Some(e));
                return;
            }
        };
        self.error.try_set(None);
        let old = self.series.get_untracked();
        let mut changed = old.len() != list.len();
        let mut next = Vec::with_capacity(list.len());
        for s in list {
            let points = s.points;
            // A line the charts have keeps its signal: only its path is drawn again.
            let line = match old.iter().find(|o| o.is(&s.metric, &s.node_id, &s.job)) {
                Some(o) => {
                    o.points.set(points);
                    o.points
                }
                None => {
                    changed = true;
                    RwSignal::new(points)
                }
            };
            next.push(Series {
                metric: s.metric,
                unit: s.unit,
                node_id: s.node_id,
                job: s.job,
                points: line,
            });
        }
        if changed {
            self.series.set(next);
        }
        self.append(held);
    }

    /// Asks for a load for the feed's sake, unless one was asked for just now; whether it did.
    fn reload_soon(self) -> bool {
        let now = js_sys::Date::now();
        if now - self.last_reload.get_value() >= RELOAD_GAP_MS {
            self.last_reload.set_value(now);
            leptos::task::spawn_local(self.load());
            return true;
        }
        false
    }

    /// Appends readings to their lines (one after its line's last point only, so a reading
    /// the buckets hold already is not drawn twice).
    fn append(self, readings: Vec<LiveReading>) {
        let mut reload = false;
        let mut unknown = Vec::new();
        self.series.with_untracked(|list| {
            for r in readings {
                let Some(s) = list.iter().find(|s| s.is(&r.metric, &r.node_id, &r.job)) else {
                    // A series the page does not have yet.
                    reload = true;
                    unknown.push(r);
                    continue;
                };
                let t = r.time;
                s.points.update(|p| {
                    if p.last().is_none_or(|&(last, _)| t > last) {
                        p.push((t, r.value));
                    }
                    reload |= p.len() > MAX_POINTS;
                });
            }
        });
        // The leader sends most readings before it commits them, so the load may not have
        // these yet: held, they are drawn after it (once: only after their line's last point).
        if reload && self.reload_soon() && !unknown.is_empty() {
            self.held
                .update_value(|h| h.get_or_insert_with(Vec::new).extend(unknown));
        }
    }
}

/// The charts of experiment `id`, with `marks` on their time axes.
#[component]
pub(super) fn Charts(id: String, #[prop(into)] marks: Signal<Vec<Mark>>) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let s = State {
        id: StoredValue::new(id.clone()),
        range: RwSignal::new(Range::Last(HOUR)),
        series: RwSignal::new(Vec::new()),
        held: StoredValue::new(None),
        last_reload: StoredValue::new(0.0),
        error: RwSignal::new(None),
    };
    // Another range: load the series over it (the first load comes with the feed's start).
    Effect::new(move |ran: Option<()>| {
        s.range.track();
        if ran.is_some() {
            leptos::task::spawn_local(s.load());
        }
    });
    let mut feed =
        ws::subscribe::<experiments::LiveReadings, Value>(experiments::live_readings::Variables {
            id,
        })
        .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                Feed::Resync => s.load().await,
                Feed::Event(ev) => {
                    let frame = experiments::frame(&ev);
                    if frame.resync || frame.skipped > 0 {
                        s.reload_soon();
                    }
                    // Held for after a load under way (none when the page is gone).
                    if let Some(Some(readings)) = s.held.try_update_value(|h| match h {
                        Some(held) => {
                            held.extend(frame.readings);
                            None
                        }
                        None => Some(frame.readings),
                    }) {
                        s.append(readings);
                    }
                }
                Feed::Failed(why) => {
                    s.error.try_set(Some(why));
                }
                Feed::Disconnected => {}
            }
        }
    });

    // The time range shown: it slides with the clock (every second) unless zoomed.
    let window = Memo::new(move |_| {
        let range = s.range.get();
        let first = matches!(range, Range::All)
            .then(|| {
                s.series.with(|l| {
                    l.iter()
                        .filter_map(|x| x.points.with(|p| p.first().map(|&(t, _)| t)))
                        .reduce(f64::min)
                })
            })
            .flatten();
        range.bounds(cluster.now_ms.get(), first)
    });
    let zoom = Callback::new(move |(a, b): (f64, f64)| s.range.set(Range::Zoom(a, b)));

    // One chart per metric, each with its lines; a line's colour is its node's and job's,
    // the same in every chart (in the order they first come: the series come by metric, node
    // and job).
    let charts = derive(move || {
        s.series.with(|list| {
            let mut pairs = Vec::<(&str, &str)>::new();
            let mut out: Vec<ChartOf> = Vec::new();
            for x in list {
                let pair = (x.node_id.as_str(), x.job.as_str());
                let i = pairs.iter().position(|p| *p == pair).unwrap_or_else(|| {
                    pairs.push(pair);
                    pairs.len() - 1
                });
                let color = PALETTE[i % PALETTE.len()];
                match out.iter_mut().find(|(m, ..)| *m == x.metric) {
                    Some((_, _, lines)) => lines.push((x.clone(), color)),
                    None => out.push((x.metric.clone(), x.unit.clone(), vec![(x.clone(), color)])),
                }
            }
            out
        })
    });
    let name_of = move |id: &str| {
        cluster
            .nodes
            .with_untracked(|l| l.iter().find(|n| n.id == id).map(|n| n.name.clone()))
            .unwrap_or_else(|| id.to_owned())
    };

    view! {
        <section class="charts">
            <h2>"Readings"</h2>
            <RangePicker range=s.range/>
            <Alert error=s.error/>
            <p class="empty" class:hidden=derive(move || !s.series.with(Vec::is_empty))>
                "No readings in this experiment yet: start a job on one of its nodes."
            </p>
            // Drawn again when a series comes or goes (rarely); new points only redraw their
            // line.
            {move || charts.get().into_iter().map(|(metric, unit, lines)| {
                let lines = lines.into_iter().map(|(x, color)| Line {
                    label: name_of(&x.node_id),
                    detail: x.job,
                    color,
                    points: x.points,
                }).collect();
                view! { <Chart title=metric unit lines marks window zoom/> }
            }).collect_view()}
        </section>
    }
}
