//! The job runtime: every job is a supervised task with a state machine
//! (`init → ready ↔ sleeping → stopped`, or `failed` with the reason), fed through its own bounded
//! control channel. It owns the jobs' drivers and the hardware they hold; the runtime owns the
//! table of jobs and their desired state on disk (`jobs.json` in the state directory), so after an
//! agent restart or a power cut the jobs that were running start again with their last settings.
//!
//! Supervision: every driver call runs on a blocking thread inside `catch_unwind`, so a hardware
//! error or a panic fails that job alone (`failed`, with the reason) and never the agent or another
//! job. Stopping and pausing release the hardware (PWM to 0, outputs low) before the state says so.
//!
//! The runtime outlives broker sessions: jobs keep driving the hardware through an outage, their
//! readings and log lines wait in the bounded outage buffers of `jobs::telemetry`, and the link
//! re-publishes every job's status after each reconnect.

use std::{
    collections::BTreeMap,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use trellis_proto::{
    Calibrations, JobKinds, JobState, JobStatus, KindSpec, LogStream, PumpCalibration, Settings,
    validate_job_name,
};

use super::{
    calibrations::Pumps,
    context::{Context, MIN_REAL_PERIOD},
    kinds::{self, Driver, Kind},
    telemetry::{Telemetry, now_ms},
};
use crate::hardware::Hardware;

/// Commands waiting for one job's task; a job that cannot keep up refuses more (the caller gets
/// an error at once, nothing piles up).
const CONTROL_QUEUE: usize = 16;
/// Ended jobs kept (to answer about them and re-publish them); older ones are forgotten.
pub const MAX_FINISHED: usize = 32;
/// Most jobs on one agent (each is a task and, often, a pin).
pub const MAX_JOBS: usize = 64;
/// Shortest time between two publications of a job's values.
pub const VALUES_EVERY: Duration = Duration::from_secs(1);
/// The file in the state directory holding the desired jobs.
const STORE_FILE: &str = "jobs.json";
/// Settings that name a pump (whose pin the job then drives).
const PUMP_SETTINGS: &[&str] = &["pump", "media_pump", "waste_pump"];

/// What a job's task is asked to do.
#[derive(Debug)]
enum Control {
    Set(Settings),
    Pause,
    Resume,
    Stop,
    /// The agent is stopping: release the outputs and gather the last readings, but say no
    /// final state (the job is still wanted, and starts again with the agent).
    Halt,
}

/// One job as the runtime sees it: its last status and the way to its task (none once over).
struct Job {
    status: JobStatus,
    control: Option<mpsc::Sender<Control>>,
}

/// A job as kept on disk: enough to start it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Desired {
    name: String,
    kind: String,
    settings: Settings,
    paused: bool,
    /// The id of the start that made it (echoed in its status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<String>,
}

/// The runtime.
pub struct Runtime {
    hw: Arc<dyn Hardware>,
    kinds: Arc<Vec<Kind>>,
    /// What the jobs share: the clock, the latest readings, the pumps.
    cx: Context,
    /// The outage buffers the link sends from.
    telemetry: Telemetry,
    /// Why the pump calibrations on disk could not be read, for [`Runtime::restore`] to report.
    pumps_problem: Option<String>,
    jobs: BTreeMap<String, Job>,
    /// Each job's newest status not yet taken by [`Runtime::next_update`]. A job task never waits
    /// to report (a full queue during a broker outage must not stall a heater's control loop):
    /// it replaces its entry, and only the newest status of a job matters.
    updates: Updates,
    store: Option<PathBuf>,
    /// The desired jobs as last written, so the file is written only when they change.
    saved: Option<Vec<Desired>>,
    /// Jobs from the file that could not start again (a kind gone, a rule changed): kept in the
    /// file, not silently dropped, and reported.
    unrestored: Vec<Desired>,
}

/// Statuses waiting for the link, and the signal that one arrived.
#[derive(Clone, Default)]
struct Updates {
    latest: Arc<std::sync::Mutex<BTreeMap<String, JobStatus>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Updates {
    fn put(&self, status: JobStatus) {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(status.name.clone(), status);
        self.arrived.notify_one();
    }

    fn take(&self) -> Option<JobStatus> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_first()
            .map(|(_, s)| s)
    }
}

impl Runtime {
    /// A runtime driving `hw`, keeping its desired jobs in `state_dir` (not kept without one).
    pub fn new(hw: Arc<dyn Hardware>, state_dir: Option<&Path>) -> Self {
        let kinds = Arc::new(kinds::available(&*hw));
        let (pumps, pumps_problem) = Pumps::load(hw.pumps(), state_dir);
        Runtime {
            cx: Context::new(hw.speed(), pumps),
            telemetry: Telemetry::new(),
            pumps_problem,
            hw,
            kinds,
            jobs: BTreeMap::new(),
            updates: Updates::default(),
            store: state_dir.map(|d| d.join(STORE_FILE)),
            saved: None,
            unrestored: Vec::new(),
        }
    }

    /// The kinds this agent offers, as announced.
    pub fn kinds(&self) -> JobKinds {
        JobKinds {
            kinds: self.kinds.iter().map(|k| k.spec.clone()).collect(),
        }
    }

    /// The outage buffers of readings and log lines, for the link.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The node's pump calibrations, as published.
    pub fn calibrations(&self) -> Calibrations {
        self.cx.pumps.all()
    }

    /// Stores a pump's calibration (the leader's `set_pump_calibration`).
    pub fn set_calibration(&mut self, calibration: PumpCalibration) -> Result<String, String> {
        self.cx.pumps.set(calibration)
    }

    /// Every job's current status.
    pub fn statuses(&self) -> impl Iterator<Item = &JobStatus> {
        self.jobs.values().map(|j| &j.status)
    }

    /// Starts the jobs kept on disk (paused ones stay paused). Returns what could not be started,
    /// with the reason, for the log.
    pub fn restore(&mut self) -> Vec<String> {
        let mut problems: Vec<String> = self.pumps_problem.take().into_iter().collect();
        let Some(path) = self.store.clone() else {
            return problems;
        };
        let desired: Vec<Desired> = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return problems,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", path.display()));
                return problems;
            }
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    // Keep it for a person to look at rather than overwrite it with no jobs.
                    let aside = path.with_extension("json.unreadable");
                    let _ = std::fs::rename(&path, &aside);
                    problems.push(format!(
                        "{} is not a job list ({e}); moved to {}",
                        path.display(),
                        aside.display()
                    ));
                    return problems;
                }
            },
        };
        for d in desired {
            // A dose cut by a power cut is not given again in full: the job says so.
            if self
                .kinds
                .iter()
                .any(|k| k.spec.kind == d.kind && !k.restarts)
            {
                problems.push(format!(
                    "job {} ({}) was interrupted by the restart; not started again",
                    d.name, d.kind
                ));
                self.interrupted(d);
                continue;
            }
            if let Err(e) = self.spawn(&d.name, &d.kind, &d.settings, d.paused, d.start.clone()) {
                problems.push(format!("job {}: {e} (kept in {})", d.name, path.display()));
                self.unrestored.push(d);
            }
        }
        // The file now says what runs (an interrupted pulse is no longer in it).
        if let Err(e) = self.save() {
            problems.push(format!(
                "cannot keep the desired jobs in {}: {e}",
                path.display()
            ));
        }
        problems
    }

    /// A job of a kind that does not start again (a pulse) was running when the agent stopped: it
    /// ends `failed`, saying so, instead of giving its whole dose again.
    fn interrupted(&mut self, d: Desired) {
        let status = JobStatus {
            name: d.name.clone(),
            kind: d.kind,
            state: JobState::Failed,
            settings: d.settings,
            error: Some("interrupted by an agent restart; not started again".into()),
            values: BTreeMap::new(),
            start: d.start,
        };
        self.updates.put(status.clone());
        self.jobs.insert(
            d.name,
            Job {
                status,
                control: None,
            },
        );
    }

    fn spec(&self, kind: &str) -> Result<&KindSpec, String> {
        self.kinds
            .iter()
            .find(|k| k.spec.kind == kind)
            .map(|k| &k.spec)
            .ok_or_else(|| {
                let names: Vec<&str> = self.kinds.iter().map(|k| k.spec.kind.as_str()).collect();
                format!(
                    "this node has no job kind {kind:?} (it has: {})",
                    names.join(", ")
                )
            })
    }

    /// Starts a job of `kind` named `name` (the kind's name when `None`). Refused: a bad name, an
    /// unknown kind, a bad setting, or a name taken by a job that has not ended.
    pub fn start(
        &mut self,
        name: Option<&str>,
        kind: &str,
        settings: &Settings,
    ) -> Result<String, String> {
        self.start_as(name, kind, settings, None)
    }

    /// [`Runtime::start`] with the id of the start, echoed in the job's status.
    pub fn start_as(
        &mut self,
        name: Option<&str>,
        kind: &str,
        settings: &Settings,
        start: Option<String>,
    ) -> Result<String, String> {
        let name = name.unwrap_or(kind);
        validate_job_name(name).map_err(|e| e.to_string())?;
        if let Some(j) = self.jobs.get(name)
            && !j.status.state.is_final()
        {
            return Err(format!(
                "a job named {name} is already {} on this node (kind {}); stop it first or choose another name",
                j.status.state.as_str(),
                j.status.kind
            ));
        }
        let resolved = self.spec(kind)?.resolve(settings)?;
        // One job per output pin: another job's release would switch this one's output off (a
        // pump's pin counts for every job that doses with it).
        for pin in self.driven_pins(&resolved) {
            if let Some(owner) = self.jobs.values().find(|j| {
                !j.status.state.is_final()
                    && j.status.name != name
                    && self.driven_pins(&j.status.settings).contains(&pin)
            }) {
                return Err(format!(
                    "pin {pin} is driven by job {} ({}); stop it first or choose another pin",
                    owner.status.name, owner.status.kind
                ));
            }
        }
        self.forget_finished();
        let live = self
            .jobs
            .values()
            .filter(|j| !j.status.state.is_final())
            .count();
        if live >= MAX_JOBS {
            return Err(format!("this node runs {MAX_JOBS} jobs already"));
        }
        self.spawn(name, kind, &resolved, false, start)?;
        Ok(format!("starting job {name} ({kind})"))
    }

    /// The output pins a job with `settings` drives: its `pin`, its LED's, and its pumps'.
    fn driven_pins(&self, settings: &Settings) -> Vec<u64> {
        let mut pins: Vec<u64> = ["pin", "led_pin"]
            .iter()
            .filter_map(|k| settings.get(*k)?.as_u64())
            .collect();
        for key in PUMP_SETTINGS {
            if let Some(pump) = settings.get(*key).and_then(|v| v.as_str())
                && let Ok(c) = self.cx.pumps.get(pump)
            {
                pins.push(u64::from(c.pin));
            }
        }
        pins
    }

    fn spawn(
        &mut self,
        name: &str,
        kind: &str,
        settings: &Settings,
        paused: bool,
        start: Option<String>,
    ) -> Result<(), String> {
        let spec = self.spec(kind)?.clone();
        let settings = spec.resolve(settings)?;
        let make = self
            .kinds
            .iter()
            .find(|k| k.spec.kind == kind)
            .map(|k| k.make)
            .ok_or_else(|| format!("no job kind {kind:?}"))?;
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let status = JobStatus {
            name: name.to_owned(),
            kind: kind.to_owned(),
            state: JobState::Init,
            settings,
            error: None,
            values: BTreeMap::new(),
            start,
        };
        tokio::spawn(run_job(
            status.clone(),
            make(&self.cx),
            Shared {
                hw: self.hw.clone(),
                cx: self.cx.clone(),
                telemetry: self.telemetry.clone(),
                updates: self.updates.clone(),
            },
            paused,
            control_rx,
        ));
        self.jobs.insert(
            name.to_owned(),
            Job {
                status,
                control: Some(control_tx),
            },
        );
        Ok(())
    }

    /// Forgets the oldest ended jobs beyond [`MAX_FINISHED`] (their retained statuses stay on the
    /// broker for the leader).
    fn forget_finished(&mut self) {
        let finished: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.status.state.is_final())
            .map(|j| j.status.name.clone())
            .collect();
        for name in finished
            .iter()
            .take(finished.len().saturating_sub(MAX_FINISHED))
        {
            self.jobs.remove(name);
        }
    }

    fn send(&self, name: &str, control: Control) -> Result<(), String> {
        let job = self
            .jobs
            .get(name)
            .ok_or_else(|| format!("no job named {name} on this node"))?;
        let over = || {
            format!(
                "job {name} is {}; start it again first",
                job.status.state.as_str()
            )
        };
        if job.status.state.is_final() {
            return Err(over());
        }
        let tx = job.control.as_ref().ok_or_else(over)?;
        tx.try_send(control)
            .map_err(|_| format!("job {name} is busy; try again"))
    }

    /// Stops a job (its hardware is released before it says `stopped`).
    pub fn stop(&mut self, name: &str) -> Result<String, String> {
        self.send(name, Control::Stop)?;
        Ok(format!("stopping job {name}"))
    }

    /// Halts every running job for the agent's stop, and waits (up to `limit`) until each has
    /// released its outputs and handed over its last readings and log lines, so the link can
    /// send them before it disconnects. The jobs stay wanted: no final state is published or
    /// kept, and they start again with the agent.
    pub async fn halt_all(&mut self, limit: Duration) {
        let running: Vec<mpsc::Sender<Control>> = self
            .jobs
            .values()
            .filter_map(|j| j.control.clone())
            .collect();
        let halted = async {
            // Every job that has room takes it at once; one busy with its queue takes it after
            // what waits there, without holding up the others.
            let mut busy = Vec::new();
            for tx in &running {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Control::Halt) {
                    busy.push(tx);
                }
            }
            for tx in busy {
                let _ = tx.send(Control::Halt).await;
            }
            for tx in &running {
                tx.closed().await;
            }
        };
        if tokio::time::timeout(limit, halted).await.is_err() {
            tracing::warn!(
                limit_s = limit.as_secs(),
                "some jobs did not halt in time; the agent stops without their last readings"
            );
        }
    }

    /// Pauses a running job.
    pub fn pause(&mut self, name: &str) -> Result<String, String> {
        self.send(name, Control::Pause)?;
        Ok(format!("pausing job {name}"))
    }

    /// Resumes a paused job.
    pub fn resume(&mut self, name: &str) -> Result<String, String> {
        self.send(name, Control::Resume)?;
        Ok(format!("resuming job {name}"))
    }

    /// Changes live settings of a job, all or nothing: a refused value changes nothing and the
    /// job keeps running with its old settings.
    pub fn set(&mut self, name: &str, change: &Settings) -> Result<String, String> {
        let job = self
            .jobs
            .get(name)
            .ok_or_else(|| format!("no job named {name} on this node"))?;
        self.spec(&job.status.kind)?.check_change(change)?;
        self.send(name, Control::Set(change.clone()))?;
        let names: Vec<&str> = change.keys().map(String::as_str).collect();
        Ok(format!("setting {} of job {name}", names.join(", ")))
    }

    /// The next status change of any job, once the runtime has recorded it (and kept the desired
    /// jobs on disk). The link publishes it.
    pub async fn next_update(&mut self) -> JobStatus {
        let status = loop {
            if let Some(s) = self.updates.take() {
                break s;
            }
            self.updates.arrived.notified().await;
        };
        if let Some(job) = self.jobs.get_mut(&status.name) {
            job.status = status.clone();
            if status.state.is_final() {
                job.control = None;
            }
        }
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "cannot keep the desired jobs on disk");
        }
        status
    }

    /// Writes the desired jobs when they changed (not on every new value: an SD card wears).
    fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = self.store.clone() else {
            return Ok(());
        };
        let mut desired: Vec<Desired> = self
            .jobs
            .values()
            .filter(|j| !j.status.state.is_final())
            .map(|j| Desired {
                name: j.status.name.clone(),
                kind: j.status.kind.clone(),
                settings: j.status.settings.clone(),
                paused: j.status.state == JobState::Sleeping,
                start: j.status.start.clone(),
            })
            .collect();
        desired.extend(self.unrestored.iter().cloned());
        if self.saved.as_ref() == Some(&desired) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(&desired)?;
        crate::files::write_private(&path, &bytes, 0o600)?;
        self.saved = Some(desired);
        Ok(())
    }
}

/// Which driver call to make.
#[derive(Clone, Copy)]
enum Op {
    Apply,
    Tick,
    Release,
}

/// Makes one driver call on a blocking thread, catching a panic. Returns the driver (gone only if
/// the blocking thread itself could not run) and the outcome in words.
async fn call(
    driver: Box<dyn Driver>,
    hw: Arc<dyn Hardware>,
    settings: Settings,
    op: Op,
) -> (Option<Box<dyn Driver>>, Result<(), String>) {
    let joined = tokio::task::spawn_blocking(move || {
        let mut d = driver;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match op {
            Op::Apply => d.apply(&*hw, &settings),
            Op::Tick => d.tick(&*hw, &settings),
            Op::Release => d.release(&*hw, &settings),
        }));
        let outcome = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("hardware error: {e}")),
            Err(panic) => Err(format!("the job panicked: {}", panic_text(&panic))),
        };
        (d, outcome)
    })
    .await;
    match joined {
        Ok((d, outcome)) => (Some(d), outcome),
        Err(e) => (None, Err(format!("the job's driver could not run: {e}"))),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What a job's task shares with the runtime and the other jobs.
struct Shared {
    hw: Arc<dyn Hardware>,
    cx: Context,
    telemetry: Telemetry,
    updates: Updates,
}

impl Shared {
    /// Takes what the driver measured and said: readings go to the node's bus, the job's latest
    /// values and the outage buffer; log lines to the agent's log and the buffer.
    fn gather(&self, name: &str, driver: &mut dyn Driver, latest: &mut BTreeMap<String, f64>) {
        let at_ms = now_ms();
        let at = self.cx.now();
        for m in driver.take_readings() {
            self.cx.bus.put(name, &m.metric, at, m.value);
            latest.insert(m.metric.clone(), m.value);
            self.telemetry.reading(name, m, at_ms);
        }
        for (stream, line) in driver.take_logs() {
            tracing::info!(job = name, stream = stream.as_str(), "{line}");
            self.telemetry.log(name, stream, line, at_ms);
        }
    }

    /// A line about the job from the agent itself (a failure, a stop).
    fn say(&self, name: &str, line: String) {
        self.telemetry.log(name, LogStream::Agent, line, now_ms());
    }
}

/// Settings or values as `name=value` pairs, for a log line.
fn described(settings: &Settings) -> String {
    let pairs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(", ")
}

/// One job's task: the state machine around its driver.
async fn run_job(
    mut status: JobStatus,
    driver: Box<dyn Driver>,
    shared: Shared,
    paused: bool,
    mut control: mpsc::Receiver<Control>,
) {
    let name = status.name.clone();
    let hw = shared.hw.clone();
    let publish = |s: &JobStatus| {
        shared.updates.put(s.clone());
        std::future::ready(())
    };
    publish(&status).await;
    let mut driver = Some(driver);
    // The latest of each reading, published with the status at most every VALUES_EVERY.
    let mut latest = BTreeMap::new();
    // Runs one driver call and gathers what it measured; on failure the job ends `failed`
    // (after a best-effort release).
    macro_rules! drive {
        ($op:expr) => {{
            let Some(d) = driver.take() else { return };
            let (d, outcome) = call(d, hw.clone(), status.settings.clone(), $op).await;
            driver = d;
            if let Some(d) = driver.as_mut() {
                shared.gather(&name, d.as_mut(), &mut latest);
            }
            if let Err(reason) = outcome {
                tracing::error!(job = name, reason, "job failed");
                shared.say(&name, format!("failed: {reason}"));
                if let Some(d) = driver.take() {
                    let _ = call(d, hw.clone(), status.settings.clone(), Op::Release).await;
                }
                status.state = JobState::Failed;
                status.error = Some(reason);
                status.values = latest;
                publish(&status).await;
                return;
            }
        }};
    }
    let mut values_sent: Option<Instant> = None;
    if paused {
        drive!(Op::Release);
        status.state = JobState::Sleeping;
        shared.say(
            &name,
            "started paused (it was paused before the agent restarted)".into(),
        );
    } else {
        drive!(Op::Apply);
        status.state = JobState::Ready;
        shared.say(&name, format!("ready: {}", described(&status.settings)));
    }
    status.values = latest.clone();
    publish(&status).await;
    loop {
        let period = match (status.state, driver.as_ref()) {
            (JobState::Ready, Some(d)) => d
                .period(&status.settings)
                .map(|p| shared.cx.real(p).max(MIN_REAL_PERIOD)),
            _ => None,
        };
        let tick = async {
            match period {
                Some(p) => tokio::time::sleep(p).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = control.recv() => match c {
                None | Some(Control::Stop) => {
                    drive!(Op::Release);
                    status.state = JobState::Stopped;
                    status.values = latest;
                    shared.say(&name, "stopped; its outputs released".into());
                    publish(&status).await;
                    return;
                }
                Some(Control::Halt) => {
                    if status.state == JobState::Ready {
                        drive!(Op::Release);
                    }
                    shared.say(&name, "halted: the agent is stopping (the job starts again with it)".into());
                    return;
                }
                Some(Control::Pause) => {
                    if status.state == JobState::Ready {
                        drive!(Op::Release);
                        status.state = JobState::Sleeping;
                        shared.say(&name, "paused; its outputs released".into());
                        publish(&status).await;
                    }
                }
                Some(Control::Resume) => {
                    if status.state == JobState::Sleeping {
                        drive!(Op::Apply);
                        status.state = JobState::Ready;
                        shared.say(&name, "resumed".into());
                        publish(&status).await;
                    }
                }
                Some(Control::Set(change)) => {
                    // As Pioreactor says it: "Updated target from 500 to 800".
                    for (k, v) in &change {
                        let old = status.settings.get(k).map_or_else(|| "nothing".to_owned(), ToString::to_string);
                        shared.say(&name, format!("updated {k} from {old} to {v}"));
                    }
                    status.settings.extend(change);
                    if status.state == JobState::Ready {
                        drive!(Op::Apply);
                    }
                    publish(&status).await;
                }
            },
            () = tick => {
                drive!(Op::Tick);
                let Some(d) = driver.as_mut() else { return };
                if d.finished() {
                    // Its work is done (a pulse gave its volume).
                    drive!(Op::Release);
                    status.state = JobState::Stopped;
                    shared.say(&name, format!("done: {}", described(&latest.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect())));
                    status.values = latest;
                    publish(&status).await;
                    return;
                }
                // Settings the job reports using are published at once (they are its echo);
                // values at most every VALUES_EVERY.
                let echoed = d.take_echoed();
                let mut changed = !echoed.is_empty();
                status.settings.extend(echoed);
                if values_sent.is_none_or(|t| t.elapsed() >= VALUES_EVERY) && latest != status.values {
                    status.values = latest.clone();
                    values_sent = Some(Instant::now());
                    changed = true;
                }
                if changed {
                    publish(&status).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hardware::simulator::Simulator;

    async fn until(rt: &mut Runtime, name: &str, state: JobState) -> JobStatus {
        // Updates of other jobs may come first; the runtime records every one, so check its
        // table after each.
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(s) = rt.statuses().find(|s| s.name == name && s.state == state) {
                    return s.clone();
                }
                rt.next_update().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name} never became {state:?}"))
    }

    #[tokio::test]
    async fn a_pwm_job_runs_changes_live_and_releases_its_pin_when_stopped() {
        let sim = Arc::new(Simulator::new());
        let dir = tempfile::tempdir().unwrap();
        let mut rt = Runtime::new(sim.clone(), Some(dir.path()));
        let given = Settings::from([("pin".into(), json!(12)), ("duty".into(), json!(40))]);
        rt.start(Some("fan"), "pwm", &given).unwrap();
        until(&mut rt, "fan", JobState::Ready).await;
        assert_eq!(sim.pin(12), Some((false, 100.0, 0.4)));

        // A refused change changes nothing, and says why.
        let e = rt
            .set("fan", &Settings::from([("duty".into(), json!(140))]))
            .unwrap_err();
        assert_eq!(e, "setting duty = 140 refused: must be between 0 and 100 %");
        let e = rt
            .set("fan", &Settings::from([("pin".into(), json!(13))]))
            .unwrap_err();
        assert!(e.contains("cannot change while the job runs"), "{e}");
        assert_eq!(sim.pin(12), Some((false, 100.0, 0.4)));

        rt.set("fan", &Settings::from([("duty".into(), json!(75))]))
            .unwrap();
        let s = rt.next_update().await;
        assert_eq!(
            (s.state, &s.settings["duty"]),
            (JobState::Ready, &json!(75))
        );
        assert_eq!(sim.pin(12), Some((false, 100.0, 0.75)));

        // The name is taken while the job runs.
        let e = rt.start(Some("fan"), "gpio", &Settings::new()).unwrap_err();
        assert!(e.contains("already ready on this node (kind pwm)"), "{e}");

        // Pause releases the pin and keeps the settings; resume puts them back.
        rt.pause("fan").unwrap();
        until(&mut rt, "fan", JobState::Sleeping).await;
        assert_eq!(sim.pin(12).map(|p| p.2), Some(0.0));
        rt.resume("fan").unwrap();
        until(&mut rt, "fan", JobState::Ready).await;
        assert_eq!(sim.pin(12).map(|p| p.2), Some(0.75));

        rt.stop("fan").unwrap();
        let s = until(&mut rt, "fan", JobState::Stopped).await;
        assert_eq!(
            sim.pin(12).map(|p| p.2),
            Some(0.0),
            "released before stopped"
        );
        assert_eq!(s.settings["duty"], json!(75));
        assert!(rt.stop("fan").unwrap_err().contains("is stopped"));
        // The name is free again.
        rt.start(Some("fan"), "pwm", &Settings::new()).unwrap();
        until(&mut rt, "fan", JobState::Ready).await;
    }

    #[tokio::test]
    async fn running_jobs_start_again_after_a_restart_with_their_last_settings() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut rt = Runtime::new(Arc::new(Simulator::new()), Some(dir.path()));
            rt.start(Some("heater"), "pwm", &Settings::new()).unwrap();
            until(&mut rt, "heater", JobState::Ready).await;
            rt.set("heater", &Settings::from([("duty".into(), json!(33))]))
                .unwrap();
            rt.next_update().await;
            rt.start(None, "gpio", &Settings::new()).unwrap();
            until(&mut rt, "gpio", JobState::Ready).await;
            rt.pause("gpio").unwrap();
            until(&mut rt, "gpio", JobState::Sleeping).await;
            rt.start(
                Some("gone"),
                "pwm",
                &Settings::from([("pin".into(), json!(5))]),
            )
            .unwrap();
            until(&mut rt, "gone", JobState::Ready).await;
            rt.stop("gone").unwrap();
            until(&mut rt, "gone", JobState::Stopped).await;
        }
        // A new agent process on the same state directory (a power cut in between).
        let sim = Arc::new(Simulator::new());
        let mut rt = Runtime::new(sim.clone(), Some(dir.path()));
        assert!(rt.restore().is_empty());
        until(&mut rt, "heater", JobState::Ready).await;
        until(&mut rt, "gpio", JobState::Sleeping).await;
        assert_eq!(sim.pin(18), Some((false, 100.0, 0.33)));
        let names: Vec<&str> = rt.statuses().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["gpio", "heater"], "the stopped job is not back");
    }

    #[tokio::test]
    async fn a_dose_cut_by_a_restart_is_not_given_again_and_pumps_have_one_job() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut rt = Runtime::new(Arc::new(Simulator::new()), Some(dir.path()));
            // 100 ml at 0.5 ml/s: still pumping when the agent goes.
            let big = Settings::from([("volume".into(), json!(100))]);
            rt.start(Some("feed"), "pulse", &big).unwrap();
            until(&mut rt, "feed", JobState::Ready).await;
            // The media pump's pin is the pulse's while it runs.
            let e = rt
                .start(Some("turbido"), "turbidostat", &Settings::new())
                .unwrap_err();
            assert!(e.contains("pin 23 is driven by job feed (pulse)"), "{e}");
            let e = rt
                .start(
                    Some("valve"),
                    "gpio",
                    &Settings::from([("pin".into(), json!(23))]),
                )
                .unwrap_err();
            assert!(e.contains("pin 23 is driven by job feed"), "{e}");
        }
        let sim = Arc::new(Simulator::new());
        let mut rt = Runtime::new(sim.clone(), Some(dir.path()));
        let problems = rt.restore();
        assert_eq!(
            problems,
            ["job feed (pulse) was interrupted by the restart; not started again"]
        );
        let s = until(&mut rt, "feed", JobState::Failed).await;
        assert_eq!(
            s.error.as_deref(),
            Some("interrupted by an agent restart; not started again")
        );
        assert_eq!(sim.pin(23).map(|p| p.0), Some(false), "the pump stays off");
        // And it is not kept for the next start.
        let mut again = Runtime::new(Arc::new(Simulator::new()), Some(dir.path()));
        assert!(again.restore().is_empty());
    }

    /// A program in the JSON-lines protocol: reports a reading and a setting, then echoes each
    /// setting change it receives on stdin as a setting and as a reading.
    const ECHO_PROGRAM: &str = r#"python3 -u -c '
import sys, json, os
print(json.dumps({"reading": {"od": 0.5}}))
print(json.dumps({"setting": {"speed": json.loads(os.environ["TRELLIS_SETTINGS"])["speed"]}}))
print("plain text is a log line")
for line in sys.stdin:
    for k, v in json.loads(line)["set"].items():
        print(json.dumps({"setting": {k: v}, "reading": {"seen_" + k: v}}))
'"#;

    #[tokio::test]
    async fn an_exec_job_speaks_json_lines_both_ways() {
        let mut rt = Runtime::new(Arc::new(Simulator::new()), None);
        let given = Settings::from([
            ("command".into(), json!(ECHO_PROGRAM)),
            ("speed".into(), json!(2)),
        ]);
        rt.start(Some("py"), "exec", &given).unwrap();
        until(&mut rt, "py", JobState::Ready).await;
        let reported = |rt: &Runtime, key: &str| {
            rt.statuses()
                .find(|s| s.name == "py")
                .and_then(|s| s.values.get(key).copied())
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while reported(&rt, "od") != Some(0.5) {
                rt.next_update().await;
            }
        })
        .await
        .expect("the program's reading arrives");
        // A setting change goes to the program's stdin; its answer comes back as a reading.
        rt.set("py", &Settings::from([("speed".into(), json!(7))]))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while reported(&rt, "seen_speed") != Some(7.0) {
                rt.next_update().await;
            }
        })
        .await
        .expect("the program saw the new setting");
        // A value that is not plain is refused before it reaches the program.
        let e = rt
            .set("py", &Settings::from([("speed".into(), json!([1, 2]))]))
            .unwrap_err();
        assert!(e.contains("must be a number, true/false or text"), "{e}");
        rt.stop("py").unwrap();
        until(&mut rt, "py", JobState::Stopped).await;
    }

    #[tokio::test]
    async fn a_program_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let mut rt = Runtime::new(Arc::new(Simulator::new()), None);
        let given = Settings::from([
            (
                "command".into(),
                json!("trap '' TERM; while :; do sleep 0.05; done"),
            ),
            ("grace".into(), json!(0.5)),
        ]);
        rt.start(Some("stubborn"), "exec", &given).unwrap();
        until(&mut rt, "stubborn", JobState::Ready).await;
        // Let the shell set its trap before it is asked to stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = std::time::Instant::now();
        rt.stop("stubborn").unwrap();
        until(&mut rt, "stubborn", JobState::Stopped).await;
        let took = asked.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_program_that_ends_by_itself_fails_its_job_with_the_exit_status() {
        let mut rt = Runtime::new(Arc::new(Simulator::new()), None);
        let given = Settings::from([("command".into(), json!("sleep 0.2; exit 3"))]);
        rt.start(Some("short"), "exec", &given).unwrap();
        let s = until(&mut rt, "short", JobState::Failed).await;
        assert_eq!(
            s.error.as_deref(),
            Some(
                "hardware error: hardware backend error: the program ended by itself (exit status: 3)"
            )
        );
    }

    struct Faulty;
    impl Driver for Faulty {
        fn apply(
            &mut self,
            _: &dyn Hardware,
            s: &Settings,
        ) -> Result<(), crate::hardware::HardwareError> {
            if s.get("duty") == Some(&json!(13)) {
                panic!("unlucky duty");
            }
            Ok(())
        }
        fn release(
            &mut self,
            _: &dyn Hardware,
            _: &Settings,
        ) -> Result<(), crate::hardware::HardwareError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_job_fails_alone_with_its_reason() {
        let sim = Arc::new(Simulator::new());
        let mut rt = Runtime::new(sim.clone(), None);
        // A kind whose driver panics on one value, beside the real ones.
        let mut kinds = kinds::available(&*sim);
        let mut faulty = kinds::available(&*sim).remove(0);
        faulty.spec.kind = "faulty".into();
        faulty.make = |_| Box::new(Faulty);
        kinds.push(faulty);
        rt.kinds = Arc::new(kinds);
        rt.start(Some("bad"), "faulty", &Settings::new()).unwrap();
        until(&mut rt, "bad", JobState::Ready).await;
        // Pin 18 is the faulty job's: one job per pin.
        let e = rt.start(Some("good"), "pwm", &Settings::new()).unwrap_err();
        assert!(e.contains("pin 18 is driven by job bad (faulty)"), "{e}");
        let on_12 = Settings::from([("pin".into(), json!(12))]);
        rt.start(Some("good"), "pwm", &on_12).unwrap();
        until(&mut rt, "good", JobState::Ready).await;
        rt.set("bad", &Settings::from([("duty".into(), json!(13))]))
            .unwrap();
        let s = until(&mut rt, "bad", JobState::Failed).await;
        assert_eq!(s.error.as_deref(), Some("the job panicked: unlucky duty"));
        // The other job and the runtime carry on.
        rt.set("good", &Settings::from([("duty".into(), json!(50))]))
            .unwrap();
        let s = rt.next_update().await;
        assert_eq!((s.name.as_str(), s.state), ("good", JobState::Ready));
        assert_eq!(sim.pin(12).map(|p| p.2), Some(0.5));
    }
}
