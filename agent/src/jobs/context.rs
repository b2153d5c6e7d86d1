//! What jobs on one node share besides the hardware: the clock (simulated time runs `speed` times
//! faster on the simulator), the latest reading of every job's metrics (so an automation reads the
//! optical density an `od_reading` job measured, and `growth_rate` follows it), and the pump
//! calibrations.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::calibrations::Pumps;

/// Shortest real time between two ticks of a job, however fast simulated time runs: a 0.25 s
/// control loop at `--sim-speed 1000` ticks every 10 ms, not every 0.25 ms.
pub const MIN_REAL_PERIOD: Duration = Duration::from_millis(10);

/// (job, metric) → (simulated seconds, value).
type Latest = BTreeMap<(String, String), (f64, f64)>;

/// The latest reading of each (job, metric) on this node: simulated seconds and value.
#[derive(Clone, Default)]
pub struct Bus {
    latest: Arc<Mutex<Latest>>,
}

impl Bus {
    /// Records a reading.
    pub fn put(&self, job: &str, metric: &str, at: f64, value: f64) {
        self.lock()
            .insert((job.to_owned(), metric.to_owned()), (at, value));
    }

    /// The latest reading of `job`'s `metric`: (simulated seconds, value).
    pub fn latest(&self, job: &str, metric: &str) -> Option<(f64, f64)> {
        self.lock()
            .get(&(job.to_owned(), metric.to_owned()))
            .copied()
    }

    /// When `metric` was last reported by any job (a dose by whichever automation gave it).
    pub fn newest(&self, metric: &str) -> Option<f64> {
        self.lock()
            .iter()
            .filter(|((_, m), _)| m == metric)
            .map(|(_, (at, _))| *at)
            .reduce(f64::max)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a job's driver is given when it is made.
#[derive(Clone)]
pub struct Context {
    /// Simulated seconds per real second (1 except on a sped-up simulator).
    pub speed: f64,
    epoch: Instant,
    /// The node's latest readings.
    pub bus: Bus,
    /// The node's pumps and their calibrations.
    pub pumps: Pumps,
}

impl Context {
    /// A context whose clock runs `speed` times faster than real time.
    pub fn new(speed: f64, pumps: Pumps) -> Self {
        Context {
            speed,
            epoch: Instant::now(),
            bus: Bus::default(),
            pumps,
        }
    }

    /// Seconds of (simulated) time since the agent started.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * self.speed
    }

    /// The real time that `simulated` takes, a day at most (a job with a longer period wakes
    /// once a day for nothing; no arithmetic overflows).
    pub fn real(&self, simulated: Duration) -> Duration {
        Duration::try_from_secs_f64(simulated.as_secs_f64() / self.speed)
            .unwrap_or(Duration::MAX)
            .min(Duration::from_secs(86_400))
    }

    /// Blocks for `simulated` seconds of simulated time (a dose). Runs on a driver's blocking
    /// thread, never on the async workers.
    pub fn sleep(&self, simulated: f64) {
        if simulated > 0.0 {
            std::thread::sleep(self.real(Duration::from_secs_f64(simulated)));
        }
    }
}
