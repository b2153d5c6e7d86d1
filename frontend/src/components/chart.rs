//! A time-series chart drawn as SVG by Leptos: one line per series, a time axis with ticks at
//! round local times, a value axis with round steps, a legend, a cursor that shows every
//! series' value at the time under the pointer, drag-to-zoom, and marks (notes, events) on the
//! time axis. [`RangePicker`] chooses the range several charts show together.
//!
//! Why SVG by hand rather than a charting crate: the web app has a size budget (400 kB gzipped,
//! BENCHMARKS.md) and had about 40 kB left; plotters with its canvas backend brings its own
//! drawing, text and font-metrics code, and a canvas must be drawn again whole for every new
//! point. Here a new point changes one attribute (its line's `d`); the lines are drawn in data
//! units (seconds, values) inside a group whose `transform` maps them onto the plot, so a
//! range that moves (the last hour, sliding every second) or a value axis that grows changes
//! that one transform, not the lines (`vector-effect: non-scaling-stroke` keeps their width).
//! The text is the page's, crisp and styled by CSS, and tests can read it.

use std::sync::atomic::{AtomicU32, Ordering};

use leptos::{ev, prelude::*};
use wasm_bindgen::JsCast;

use super::{derive, escape as esc, number, on};

/// The drawing's own units (the SVG `viewBox`); it scales to the page's width.
const W: f64 = 960.0;
const H: f64 = 280.0;
/// Room for the value axis' labels, on the left.
const LEFT: f64 = 62.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 10.0;
/// Room for the time axis' labels and the marks.
const BOTTOM: f64 = 30.0;
const PLOT_W: f64 = W - LEFT - RIGHT;
const PLOT_H: f64 = H - TOP - BOTTOM;

/// The colours lines take, in order: distinct for the colour-blind first (Okabe-Ito), then more.
pub const PALETTE: [&str; 10] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#5d3a9b", "#8c564b",
    "#7f7f7f", "#bcbd22",
];

/// One line: a series of points, oldest first.
#[derive(Clone)]
pub struct Line {
    /// What the legend says first (a node's name).
    pub label: String,
    /// What it says after, muted (the job).
    pub detail: String,
    /// The line's colour.
    pub color: &'static str,
    /// Its points: (time in ms since the epoch, value), by time. Appending a point redraws this
    /// line's path alone.
    pub points: RwSignal<Vec<(f64, f64)>>,
}

/// Something that happened, marked on the time axis (a note, an audit event).
#[derive(Clone, PartialEq)]
pub struct Mark {
    /// When, in ms since the epoch.
    pub time: f64,
    /// What the tooltip says.
    pub text: String,
    /// A note (else an event): they have their own colour.
    pub note: bool,
}

/// Which time range charts show.
#[derive(Clone, Copy, PartialEq)]
pub enum Range {
    /// The last this many ms, up to now.
    Last(f64),
    /// Everything there is.
    All,
    /// From, to (ms since the epoch): chosen by dragging over a chart.
    Zoom(f64, f64),
}

const HOUR: f64 = 3_600_000.0;

impl Range {
    /// The range's bounds in ms: `first` is the oldest point there is (for [`Range::All`]).
    pub fn bounds(self, now: f64, first: Option<f64>) -> (f64, f64) {
        match self {
            Range::Last(span) => (now - span, now),
            Range::All => {
                // From the oldest point, with a little room, and ten seconds at least.
                let first = first.unwrap_or(now - HOUR);
                let span = (now - first).max(10_000.0);
                (now - span * 1.02, now)
            }
            Range::Zoom(from, to) => (from, to),
        }
    }
}

/// Buttons choosing the last hour, 6 hours, day or everything; while a chart is zoomed, a
/// Reset button instead goes back to the range chosen before.
#[component]
pub fn RangePicker(
    /// The range the charts show.
    range: RwSignal<Range>,
) -> impl IntoView {
    const CHOICES: [(&str, Range); 4] = [
        ("1 h", Range::Last(HOUR)),
        ("6 h", Range::Last(6.0 * HOUR)),
        ("24 h", Range::Last(24.0 * HOUR)),
        ("all", Range::All),
    ];
    // The range to go back to from a zoom.
    let before = StoredValue::new(range.get_untracked());
    let buttons = super::markup(move || {
        use std::fmt::Write;
        let now = range.get();
        let mut html = String::from(r#"<span class="label">Show</span>"#);
        for (word, r) in CHOICES {
            let _ = write!(
                html,
                r#"<button type="button" data-range="{word}" aria-pressed="{}">{word}</button>"#,
                r == now
            );
        }
        if matches!(now, Range::Zoom(..)) {
            html.push_str(r#"<button type="button" class="reset-zoom" data-range="reset">Reset zoom</button>"#);
        }
        html.push_str(r#"<small class="hint">Drag across a chart to zoom in.</small>"#);
        html
    });
    let pick = move |e: ev::MouseEvent| {
        let chosen = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|t| t.get_attribute("data-range"));
        match chosen.as_deref() {
            Some("reset") => range.set(before.get_value()),
            Some(word) => {
                if let Some(&(_, r)) = CHOICES.iter().find(|(w, _)| *w == word) {
                    before.set_value(r);
                    range.set(r);
                }
            }
            None => {}
        }
    };
    view! { <div class="range-picker" role="group" aria-label="Time range" inner_html=buttons on:click=on(pick)></div> }
}

/// Where the pointer is over the plot, in drawing units, and where a drag started (while the
/// button is down).
#[derive(Clone, Copy, PartialEq)]
struct Pointer {
    x: f64,
    drag_from: Option<f64>,
}

/// What the cursor shows: the time under the pointer, each line's nearest point to it, and the
/// marks there.
#[derive(Clone, PartialEq)]
struct Readout {
    x: f64,
    time: f64,
    /// Each line with a point near the cursor: its index, and the point.
    rows: Vec<(usize, f64, f64)>,
    marks: Vec<String>,
}

/// A unique id for each chart's clip path.
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A chart of `lines` over the time range `window`.
///
/// The lines are elements of their own, each with its `d`; what is drawn again whole whenever
/// the window or the value axis moves (the grid, the ticks and their labels, the marks) and what
/// follows the pointer (the cursor, its dots and readout, a drag's selection) is written as
/// markup, every value in it a number or escaped text: a view per tick would cost the web app
/// several times the code for the same picture.
#[component]
pub fn Chart(
    /// What it shows (a metric).
    title: String,
    /// The values' unit, if any.
    unit: Option<String>,
    /// Its lines.
    lines: Vec<Line>,
    /// Marks on the time axis.
    #[prop(into)]
    marks: Signal<Vec<Mark>>,
    /// The time range shown: from, to (ms since the epoch).
    #[prop(into)]
    window: Signal<(f64, f64)>,
    /// Told the range a drag selected.
    zoom: Callback<(f64, f64)>,
) -> impl IntoView {
    let lines = StoredValue::new(lines);
    let clip = format!("plot-clip-{}", next_id());
    // The lines are drawn in seconds since this time, which keeps their numbers small enough
    // for the browser's single-precision geometry.
    let origin = window.get_untracked().0;

    // The value axis: round bounds around what the window shows, and its ticks.
    let axis = Memo::new(move |_| {
        let (from, to) = window.get();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        lines.with_value(|ls| {
            for l in ls {
                l.points.with(|p| {
                    for &(_, v) in &p[visible(p, from, to)] {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                });
            }
        });
        ValueAxis::around(lo, hi)
    });
    // Data units (s since `origin`, value) onto the plot.
    let transform = derive(move || {
        let (from, to) = window.get();
        axis.with(|a| {
            let sx = PLOT_W / ((to - from) / 1000.0);
            let sy = PLOT_H / (a.hi - a.lo);
            format!(
                "matrix({sx} 0 0 {} {} {})",
                -sy,
                LEFT + (origin - from) / 1000.0 * sx,
                TOP + PLOT_H + a.lo * sy
            )
        })
    });
    let decor = derive(move || {
        let w = window.get();
        let empty = lines.with_value(|ls| {
            ls.iter()
                .all(|l| l.points.with(|p| visible(p, w.0, w.1).is_empty()))
        });
        axis.with(|a| marks.with(|m| decor(w, a, m, empty)))
    });

    let pointer = RwSignal::new(None::<Pointer>);
    // Where a pointer event is, in drawing units (the drawing is as wide as the page lets it).
    let at = move |e: &ev::MouseEvent| -> Option<f64> {
        let svg = e.current_target()?.dyn_into::<web_sys::Element>().ok()?;
        let rect = svg.get_bounding_client_rect();
        let x = (f64::from(e.client_x()) - rect.left()) * W / rect.width();
        Some(x.clamp(LEFT, LEFT + PLOT_W))
    };
    let time_at = move |x: f64| {
        let (from, to) = window.get_untracked();
        from + (x - LEFT) / PLOT_W * (to - from)
    };
    let on_move = move |e: ev::MouseEvent| {
        if let Some(x) = at(&e) {
            let drag_from = pointer.with_untracked(|p| p.and_then(|p| p.drag_from));
            pointer.set(Some(Pointer { x, drag_from }));
        }
    };
    let on_down = move |e: ev::MouseEvent| {
        if e.button() == 0
            && let Some(x) = at(&e)
        {
            // No text selection while dragging.
            e.prevent_default();
            pointer.set(Some(Pointer {
                x,
                drag_from: Some(x),
            }));
        }
    };
    let on_up = move |e: ev::MouseEvent| {
        let start = pointer.with_untracked(|p| p.and_then(|p| p.drag_from));
        pointer.set(at(&e).map(|x| Pointer { x, drag_from: None }));
        if let (Some(x0), Some(x1)) = (start, at(&e)) {
            // A click, or a twitch, is not a zoom.
            if (x1 - x0).abs() >= 6.0 {
                zoom.run((time_at(x0.min(x1)), time_at(x0.max(x1))));
            }
        }
    };

    // The time under the cursor, and each line's value nearest to it (a line with nothing
    // near says nothing there).
    let readout = Memo::new(move |_| {
        let x = pointer.get()?.x;
        let (from, to) = window.get();
        let time = from + (x - LEFT) / PLOT_W * (to - from);
        let rows = lines.with_value(|ls| {
            ls.iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    let (t, v) = l.points.with(|p| nearest(p, time))?;
                    ((t - time).abs() <= (to - from) / 20.0).then_some((i, t, v))
                })
                .collect::<Vec<_>>()
        });
        // Marks within a few pixels of the cursor.
        let near = (to - from) / PLOT_W * 5.0;
        let marks = marks.with(|m| {
            m.iter()
                .filter(|m| (m.time - time).abs() <= near)
                .map(|m| m.text.clone())
                .collect()
        });
        Some(Readout {
            x,
            time,
            rows,
            marks,
        })
    });
    // The cursor, its dots, and a drag's selection.
    let overlay = derive(move || {
        use std::fmt::Write;
        let mut svg = String::new();
        if let Some(Pointer {
            x,
            drag_from: Some(x0),
        }) = pointer.get()
        {
            let _ = write!(
                svg,
                r#"<rect class="selection" x="{:.1}" y="{TOP}" width="{:.1}" height="{PLOT_H}"/>"#,
                x0.min(x),
                (x0 - x).abs()
            );
        }
        let Some(r) = readout.get() else { return svg };
        let (from, to) = window.get();
        let _ = write!(
            svg,
            r#"<line class="cursor" x1="{0:.1}" x2="{0:.1}" y1="{TOP}" y2="{1}"/>"#,
            r.x,
            TOP + PLOT_H
        );
        axis.with(|a| {
            lines.with_value(|ls| {
                for &(i, t, v) in &r.rows {
                    let _ = write!(
                        svg,
                        r#"<circle class="dot" r="4" cx="{:.1}" cy="{:.1}" fill="{}"/>"#,
                        LEFT + (t - from) / (to - from) * PLOT_W,
                        TOP + PLOT_H - (v - a.lo) / (a.hi - a.lo) * PLOT_H,
                        ls[i].color
                    );
                }
            })
        });
        svg
    });
    let suffix = unit
        .as_deref()
        .map(|u| format!(" {}", esc(u)))
        .unwrap_or_default();
    // The readout beside the cursor: on its right, or on its left past the middle.
    let readout_html = derive(move || {
        use std::fmt::Write;
        let Some(r) = readout.get() else {
            return String::new();
        };
        let mut html = format!("<time>{}</time>", clock(r.time, true));
        lines.with_value(|ls| {
            for &(i, _, v) in &r.rows {
                let l = &ls[i];
                let _ = write!(
                    html,
                    r#"<div class="row"><span class="swatch" style="background:{}"></span><span class="name">{} <small>{}</small></span><span class="value">{}{suffix}</span></div>"#,
                    l.color,
                    esc(&l.label),
                    esc(&l.detail),
                    number(v)
                );
            }
        });
        for m in &r.marks {
            let _ = write!(html, r#"<div class="mark-text">{}</div>"#, esc(m));
        }
        html
    });
    let readout_style = derive(move || {
        readout.with(|r| match r {
            None => "display:none".to_owned(),
            Some(r) if r.x / W > 0.55 => format!("right:{:.2}%", 101.0 - r.x / W * 100.0),
            Some(r) => format!("left:{:.2}%", r.x / W * 100.0 + 1.0),
        })
    });

    let paths = lines.with_value(|ls| {
        ls.iter()
            .map(|l| {
                let points = l.points;
                let d = derive(move || points.with(|p| path(p, origin)));
                view! { <path class="line" d=d stroke=l.color/> }
            })
            .collect_view()
    });
    // The legend, with each line's latest value.
    let legend = super::markup(move || {
        use std::fmt::Write;
        let mut html = String::new();
        lines.with_value(|ls| {
            for l in ls {
                let last = l.points.with(|p| p.last().map(|&(_, v)| number(v)));
                let _ = write!(
                    html,
                    r#"<li data-series="{0}/{1}"><span class="swatch" style="background:{2}"></span><span class="name">{0}</span> <small>{1}</small> <span class="value">{3}</span></li>"#,
                    esc(&l.label),
                    esc(&l.detail),
                    l.color,
                    last.unwrap_or_default()
                );
            }
        });
        html
    });
    let caption = match &unit {
        Some(u) => format!("{title} ({u})"),
        None => title.clone(),
    };

    let label = format!("{title} over time");
    view! {
        <figure class="chart" data-metric=title>
            <figcaption>{caption}</figcaption>
            <div class="plot">
                <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=label
                    on:mousemove=on(on_move) on:mousedown=on(on_down) on:mouseup=on(on_up)
                    on:mouseleave=on(move |_| pointer.set(None))>
                    <defs><clipPath id=clip.clone()><rect x=LEFT y=TOP width=PLOT_W height=PLOT_H/></clipPath></defs>
                    <g class="decor" inner_html=decor></g>
                    <g clip-path=format!("url(#{clip})")>
                        <g class="lines" transform=transform>{paths}</g>
                    </g>
                    <g class="overlay" inner_html=overlay></g>
                </svg>
                <div class="readout" style=readout_style inner_html=readout_html></div>
            </div>
            <ul class="legend" inner_html=legend></ul>
        </figure>
    }
}

/// The grid, the axes with their ticks and labels, the marks (each with its tooltip), and
/// "No readings in this range" when nothing is in the window.
fn decor((from, to): (f64, f64), a: &ValueAxis, marks: &[Mark], empty: bool) -> String {
    use std::fmt::Write;
    let x_of = |t: f64| LEFT + (t - from) / (to - from) * PLOT_W;
    let bottom = TOP + PLOT_H;
    let mut svg = String::with_capacity(4096);
    for (v, label) in &a.ticks {
        let y = bottom - (v - a.lo) / (a.hi - a.lo) * PLOT_H;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick value" x="{}" y="{:.1}">{label}</text>"#,
            LEFT + PLOT_W,
            LEFT - 8.0,
            y + 4.0
        );
    }
    for (t, label) in time_axis(from, to) {
        let x = x_of(t);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{bottom}"/><text class="tick time" x="{x:.1}" y="{}">{label}</text>"#,
            H - 10.0
        );
    }
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" x2="{}" y1="{bottom}" y2="{bottom}"/><line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>"#,
        LEFT + PLOT_W
    );
    if empty {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{}" y="{}">No readings in this range</text>"#,
            LEFT + PLOT_W / 2.0,
            TOP + PLOT_H / 2.0
        );
    }
    for m in marks.iter().filter(|m| m.time >= from && m.time <= to) {
        let _ = write!(
            svg,
            r#"<g class="mark {}"><title>{}</title><rect x="{:.1}" y="{}" width="3" height="12"/></g>"#,
            if m.note { "note" } else { "event" },
            esc(&m.text),
            x_of(m.time) - 1.5,
            bottom - 6.0
        );
    }
    svg
}

/// The indices of the points from `from` to `to` (points are by time), with one more on each
/// side so a line runs to the edge of the plot.
fn visible(p: &[(f64, f64)], from: f64, to: f64) -> std::ops::Range<usize> {
    let start = p.partition_point(|&(t, _)| t < from);
    let end = p.partition_point(|&(t, _)| t <= to);
    if start >= end {
        return start..start;
    }
    start.saturating_sub(1)..(end + 1).min(p.len())
}

/// The point nearest in time to `t`.
fn nearest(p: &[(f64, f64)], t: f64) -> Option<(f64, f64)> {
    let i = p.partition_point(|&(x, _)| x < t);
    let after = p.get(i).copied();
    let before = i.checked_sub(1).and_then(|j| p.get(j)).copied();
    match (before, after) {
        (Some(b), Some(a)) => Some(if t - b.0 <= a.0 - t { b } else { a }),
        (b, a) => b.or(a),
    }
}

/// A line's path in data units: seconds since `origin` across, the value up (the group's
/// transform flips and scales it). One point is drawn as a dot (a round cap on no length).
fn path(p: &[(f64, f64)], origin: f64) -> String {
    use std::fmt::Write;
    let mut d = String::with_capacity(p.len() * 16);
    for (i, &(t, v)) in p.iter().enumerate() {
        let cmd = if i == 0 { 'M' } else { 'L' };
        let _ = write!(d, "{cmd}{:.3} {v}", (t - origin) / 1000.0);
    }
    if let [(t, v)] = p {
        let _ = write!(d, "L{:.3} {v}", (t - origin) / 1000.0);
    }
    d
}

/// The value axis: its bounds and labelled ticks.
#[derive(Clone, PartialEq)]
struct ValueAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

impl ValueAxis {
    /// About five round steps (1, 2 or 5 times a power of ten) covering `lo` to `hi`, with the
    /// bounds on steps, so the axis keeps still while values move inside it.
    fn around(lo: f64, hi: f64) -> ValueAxis {
        let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
            (true, true) if hi > lo => (lo, hi),
            (true, true) => {
                let pad = if lo == 0.0 { 1.0 } else { lo.abs() / 10.0 };
                (lo - pad, hi + pad)
            }
            _ => (0.0, 1.0),
        };
        let (step, decimals) = nice_step((hi - lo) / 5.0);
        let lo = (lo / step).floor() * step;
        let hi = (hi / step).ceil() * step;
        let n = ((hi - lo) / step).round() as usize;
        let ticks = (0..=n)
            .map(|i| {
                let v = lo + i as f64 * step;
                // No "-0.0".
                let v = if v.abs() < step / 1e6 { 0.0 } else { v };
                (v, format!("{v:.decimals$}"))
            })
            .collect();
        ValueAxis { lo, hi, ticks }
    }
}

/// The round step (1, 2 or 5 times a power of ten) nearest above `raw`, and the decimals its
/// labels need. Powers of ten by multiplying: `powf` and `log10` would add libm's code.
fn nice_step(raw: f64) -> (f64, usize) {
    let raw = if raw > 1e-12 && raw < 1e12 { raw } else { 1.0 };
    let (mut pow, mut decimals) = (1.0, 0usize);
    while pow * 10.0 <= raw {
        pow *= 10.0;
    }
    while pow > raw {
        pow /= 10.0;
        decimals += 1;
    }
    let f = raw / pow;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    // A step of 10 × 0.1 is 1: one decimal fewer.
    let decimals = if m == 10.0 {
        decimals.saturating_sub(1)
    } else {
        decimals
    };
    (m * pow, decimals.min(9))
}

const SECOND: f64 = 1000.0;
const MINUTE: f64 = 60.0 * SECOND;
const DAY: f64 = 24.0 * HOUR;

/// Ticks of the time axis from `from` to `to` (ms): at round local times (every 10 s, 5 min,
/// 1 h, 1 d, ...), about one per 120 drawing units, each with its label.
fn time_axis(from: f64, to: f64) -> Vec<(f64, String)> {
    const STEPS: [f64; 20] = [
        SECOND,
        2.0 * SECOND,
        5.0 * SECOND,
        10.0 * SECOND,
        15.0 * SECOND,
        30.0 * SECOND,
        MINUTE,
        2.0 * MINUTE,
        5.0 * MINUTE,
        10.0 * MINUTE,
        15.0 * MINUTE,
        30.0 * MINUTE,
        HOUR,
        2.0 * HOUR,
        3.0 * HOUR,
        6.0 * HOUR,
        12.0 * HOUR,
        DAY,
        2.0 * DAY,
        7.0 * DAY,
    ];
    let span = to - from;
    if span.is_nan() || span <= 0.0 {
        return Vec::new();
    }
    let want = span / (PLOT_W / 120.0);
    let step = STEPS.into_iter().find(|&s| s >= want).unwrap_or(7.0 * DAY);
    // Round in local time: the offset of the browser's time zone, in ms (east is positive).
    let offset = -js_sys::Date::new(&from.into()).get_timezone_offset() * MINUTE;
    let mut t = ((from + offset) / step).ceil() * step - offset;
    let mut out = Vec::new();
    while t <= to {
        let date = js_sys::Date::new(&t.into());
        let midnight = date.get_hours() == 0 && date.get_minutes() == 0 && date.get_seconds() == 0;
        let label = if step >= DAY || (midnight && step >= MINUTE) {
            format!(
                "{} {}",
                date.get_date(),
                MONTHS[date.get_month() as usize % 12]
            )
        } else {
            clock(t, step < MINUTE)
        };
        out.push((t, label));
        t += step;
    }
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A time (ms since the epoch) as the browser's local time of day: "14:05", or "14:05:30".
pub fn clock(t: f64, seconds: bool) -> String {
    let d = js_sys::Date::new(&t.into());
    let (h, m) = (d.get_hours(), d.get_minutes());
    if seconds {
        format!("{h:02}:{m:02}:{:02}", d.get_seconds())
    } else {
        format!("{h:02}:{m:02}")
    }
}
