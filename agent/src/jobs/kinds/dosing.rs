//! Dosing with calibrated pumps. Each pump is switched by a pin and moves a calibrated number of
//! millilitres per second (`jobs::calibrations`), so a volume becomes a time the pump runs.
//!
//! - `pulse`: runs one pump for a duration or, through its calibration, a volume; then the job
//!   ends (`stopped`). Paused halfway, it gives the rest when resumed. `add_media` and
//!   `remove_waste` are its presets.
//! - `turbidostat`: holds the culture's optical density near a target: whenever an OD reading
//!   (the latest `od` of job `od_job`, taken after the last dose ended) is above `target_od`, it
//!   adds `volume` ml of media, then runs the waste pump for twice that volume.
//! - `chemostat`: holds a fixed dilution rate `D` (per hour): it adds `volume` ml of media and
//!   runs the waste pump for twice that every `volume / (D · vessel_volume)` hours.
//!
//! Waste runs for twice the media because, as on a Pioreactor, the waste line draws from a tube
//! at the culture's working volume: what is above it goes, then air. So the volume stays put
//! however a pump's real flow drifts from its calibration.
//!
//! Every dose is a reading (`media_ml`, `waste_ml`, or `<pump>_ml` for a pulse) and a log line.
//! A dose holds the job's thread while the pump runs (a stop waits for the dose to end: a pump
//! is never left half-way on); releasing switches every pump the job uses off.

use std::time::Duration;

use serde_json::json;
use trellis_proto::{KindSpec, LogStream, SettingType, Settings};

use super::{Driver, Kind, Measurement, Setting, float, number, string, text};
use crate::{
    hardware::{Hardware, HardwareError},
    jobs::context::Context,
};

/// How long before a pulse's end its job wakes to finish it with a precise sleep (real time).
const FINISH_LEAD: Duration = Duration::from_millis(50);

/// How much longer than the media the waste pump runs (see the module's notes).
const WASTE_FACTOR: f64 = 2.0;

fn refused(reason: String) -> HardwareError {
    HardwareError::Backend(reason)
}

/// Runs `pump` long enough to move `ml` millilitres; the pump is off again when this returns,
/// also when switching it failed half-way.
fn dose(cx: &Context, hw: &dyn Hardware, pump: &str, ml: f64) -> Result<(), HardwareError> {
    let c = cx.pumps.get(pump).map_err(refused)?;
    hw.write_pin(c.pin, true)?;
    cx.sleep(ml / c.ml_per_second);
    hw.write_pin(c.pin, false)
}

/// Switches the named pumps off (those that have a calibration: one without never ran).
fn pumps_off(cx: &Context, hw: &dyn Hardware, pumps: &[&str]) -> Result<(), HardwareError> {
    for pump in pumps {
        if let Ok(c) = cx.pumps.get(pump) {
            hw.write_pin(c.pin, false)?;
        }
    }
    Ok(())
}

fn pump_setting(name: &'static str, default: &str, description: &'static str) -> Setting {
    string(name, default, false, description)
}

/// `pulse`'s declaration.
pub fn pulse() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "pulse".into(),
            description: "Run a pump for a duration or, through its calibration, a volume".into(),
            settings: vec![
                pump_setting("pump", "media", "The pump (media, waste, alt_media or one calibrated on this node)").into(),
                Setting {
                    name: "mode",
                    ty: SettingType::Enum,
                    unit: None,
                    range: None,
                    choices: &["volume", "duration"],
                    default: json!("volume"),
                    live: false,
                    description: "Give a volume (needs the pump's calibration) or run for a duration",
                }
                .into(),
                float("volume", Some("ml"), (0.01, 1000.0), 1.0, false, "How much to move").into(),
                float("duration", Some("s"), (0.01, 3600.0), 1.0, false, "How long to run").into(),
            ],
            open: false,
        },
        make: |cx| {
            Box::new(Pulse {
                cx: cx.clone(),
                pump: None,
                started: None,
                done_s: 0.0,
                finished: false,
                readings: Vec::new(),
            })
        },
        restarts: false,
    }
}

struct Pulse {
    cx: Context,
    /// The pump's calibration as it was when the job first switched it on: the pin it switches
    /// off and the rate it counts with, even if an operator recalibrates the pump meanwhile.
    pump: Option<trellis_proto::PumpCalibration>,
    /// When the pump was switched on (simulated seconds), while it runs.
    started: Option<f64>,
    /// Seconds it has run before (a pause in between).
    done_s: f64,
    finished: bool,
    readings: Vec<Measurement>,
}

impl Pulse {
    /// How long the pump must run in all, seconds, and its calibration.
    fn plan(
        &self,
        settings: &Settings,
    ) -> Result<(f64, trellis_proto::PumpCalibration), HardwareError> {
        let c = match &self.pump {
            Some(c) => c.clone(),
            None => self
                .cx
                .pumps
                .get(text(settings, "pump")?)
                .map_err(refused)?,
        };
        let seconds = match text(settings, "mode")? {
            "duration" => number(settings, "duration")?,
            _ => number(settings, "volume")? / c.ml_per_second,
        };
        Ok((seconds, c))
    }

    fn ran(&self) -> f64 {
        self.done_s + self.started.map_or(0.0, |t| self.cx.now() - t)
    }

    /// Finishes the dose when what is left takes at most twice [`FINISH_LEAD`] of real time:
    /// a precise sleep, then the pump off.
    fn finish_if_near(
        &mut self,
        hw: &dyn Hardware,
        total: f64,
        c: &trellis_proto::PumpCalibration,
    ) -> Result<(), HardwareError> {
        let left = total - self.ran();
        if left / self.cx.speed > FINISH_LEAD.as_secs_f64() * 2.0 {
            return Ok(());
        }
        self.cx.sleep(left);
        hw.write_pin(c.pin, false)?;
        self.done_s = self.ran();
        self.started = None;
        self.finished = true;
        let ml = self.done_s * c.ml_per_second;
        self.readings
            .push(Measurement::new(&format!("{}_ml", c.pump), ml, Some("ml")));
        Ok(())
    }
}

impl Driver for Pulse {
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let (total, c) = self.plan(settings)?;
        if self.started.is_none() && !self.finished {
            self.pump = Some(c.clone());
            hw.write_pin(c.pin, true)?;
            self.started = Some(self.cx.now());
            // A short dose is given here and now.
            self.finish_if_near(hw, total, &c)?;
        }
        Ok(())
    }

    fn period(&self, settings: &Settings) -> Option<Duration> {
        // Wake a little early and finish in `tick` with a precise sleep: a tick's timer is only
        // as fine as the runtime's (and 10 ms at least), which at a high simulator speed is
        // many simulated seconds of pumping.
        let (total, _) = self.plan(settings).ok()?;
        let lead = FINISH_LEAD.as_secs_f64() * self.cx.speed;
        if self.finished {
            return Some(Duration::ZERO);
        }
        Some(
            Duration::try_from_secs_f64((total - self.ran() - lead).max(0.0))
                .unwrap_or(Duration::MAX),
        )
    }

    fn tick(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        if self.finished {
            return Ok(());
        }
        let (total, c) = self.plan(settings)?;
        self.finish_if_near(hw, total, &c)
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        self.done_s = self.ran();
        self.started = None;
        let (_, c) = self.plan(settings)?;
        hw.write_pin(c.pin, false)
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        std::mem::take(&mut self.readings)
    }

    fn finished(&self) -> bool {
        self.finished
    }
}

fn automation_settings(mut own: Vec<Setting>) -> Vec<trellis_proto::SettingSpec> {
    own.push(float(
        "volume",
        Some("ml"),
        (0.05, 50.0),
        1.0,
        true,
        "Media added (and waste removed) per dose",
    ));
    own.push(pump_setting(
        "media_pump",
        "media",
        "The pump that adds media",
    ));
    own.push(pump_setting(
        "waste_pump",
        "waste",
        "The pump that removes waste",
    ));
    own.into_iter().map(Into::into).collect()
}

/// `turbidostat`'s declaration.
pub fn turbidostat() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "turbidostat".into(),
            description:
                "Dose media and remove waste whenever the optical density is above a target".into(),
            settings: automation_settings(vec![
                float(
                    "target_od",
                    Some("OD"),
                    (0.01, 20.0),
                    1.0,
                    true,
                    "Optical density to hold",
                ),
                string(
                    "od_job",
                    "od_reading",
                    true,
                    "The job whose `od` readings are followed",
                ),
                float(
                    "interval",
                    Some("s"),
                    (1.0, 3600.0),
                    10.0,
                    true,
                    "Time between checks",
                ),
            ]),
            open: false,
        },
        make: |cx| Box::new(Automation::new(cx, Mode::Turbidostat)),
        restarts: true,
    }
}

/// `chemostat`'s declaration.
pub fn chemostat() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "chemostat".into(),
            description: "Dose media and remove waste at a fixed dilution rate".into(),
            settings: automation_settings(vec![
                float(
                    "dilution_rate",
                    Some("1/h"),
                    (0.001, 10.0),
                    0.2,
                    true,
                    "Volume exchanged per hour, as a fraction of the culture",
                ),
                float(
                    "vessel_volume",
                    Some("ml"),
                    (1.0, 10_000.0),
                    14.0,
                    true,
                    "The culture's volume",
                ),
            ]),
            open: false,
        },
        make: |cx| Box::new(Automation::new(cx, Mode::Chemostat)),
        restarts: true,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Turbidostat,
    Chemostat,
}

struct Automation {
    cx: Context,
    mode: Mode,
    /// When the last dose ended (simulated seconds): an OD reading must be newer to count.
    last_dose: f64,
    waiting_said: bool,
    readings: Vec<Measurement>,
    logs: Vec<(LogStream, String)>,
}

impl Automation {
    fn new(cx: &Context, mode: Mode) -> Self {
        Automation {
            cx: cx.clone(),
            mode,
            last_dose: f64::NEG_INFINITY,
            waiting_said: false,
            readings: Vec::new(),
            logs: Vec::new(),
        }
    }

    fn exchange(
        &mut self,
        hw: &dyn Hardware,
        settings: &Settings,
        why: String,
    ) -> Result<(), HardwareError> {
        let ml = number(settings, "volume")?;
        dose(&self.cx, hw, text(settings, "media_pump")?, ml)?;
        dose(
            &self.cx,
            hw,
            text(settings, "waste_pump")?,
            WASTE_FACTOR * ml,
        )?;
        self.last_dose = self.cx.now();
        self.readings
            .push(Measurement::new("media_ml", ml, Some("ml")));
        self.readings
            .push(Measurement::new("waste_ml", WASTE_FACTOR * ml, Some("ml")));
        self.logs
            .push((LogStream::Agent, format!("exchanged {ml} ml: {why}")));
        Ok(())
    }
}

impl Driver for Automation {
    fn apply(&mut self, _hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        // Both pumps must be calibrated before anything runs.
        for pump in ["media_pump", "waste_pump"] {
            self.cx.pumps.get(text(settings, pump)?).map_err(refused)?;
        }
        Ok(())
    }

    fn period(&self, settings: &Settings) -> Option<Duration> {
        let simulated: f64 = match self.mode {
            Mode::Turbidostat => number(settings, "interval").ok()?,
            Mode::Chemostat => {
                let hours = number(settings, "volume").ok()?
                    / (number(settings, "dilution_rate").ok()?
                        * number(settings, "vessel_volume").ok()?);
                hours * 3600.0
            }
        };
        Some(Duration::try_from_secs_f64(simulated).unwrap_or(Duration::MAX))
    }

    fn tick(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        match self.mode {
            Mode::Chemostat => {
                let d = number(settings, "dilution_rate")?;
                self.exchange(hw, settings, format!("dilution rate {d}/h"))
            }
            Mode::Turbidostat => {
                let job = text(settings, "od_job")?;
                let Some((at, od)) = self.cx.bus.latest(job, "od") else {
                    if !self.waiting_said {
                        self.waiting_said = true;
                        self.logs.push((
                            LogStream::Agent,
                            format!("waiting for od readings from job {job} (start od_reading)"),
                        ));
                    }
                    return Ok(());
                };
                let target = number(settings, "target_od")?;
                if od > target && at > self.last_dose {
                    self.exchange(hw, settings, format!("OD {od:.3} above target {target}"))?;
                }
                Ok(())
            }
        }
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        pumps_off(
            &self.cx,
            hw,
            &[text(settings, "media_pump")?, text(settings, "waste_pump")?],
        )
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        std::mem::take(&mut self.readings)
    }

    fn take_logs(&mut self) -> Vec<(LogStream, String)> {
        std::mem::take(&mut self.logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        hardware::simulator::{MEDIA_PUMP_PIN, Simulator},
        jobs::calibrations::Pumps,
    };

    fn context(sim: &Simulator, speed: f64) -> Context {
        Context::new(speed, Pumps::load(sim.pumps(), None).0)
    }

    fn settings(kind: &Kind, over: &[(&str, serde_json::Value)]) -> Settings {
        let mut given = Settings::new();
        for (k, v) in over {
            given.insert((*k).to_owned(), v.clone());
        }
        kind.spec.resolve(&given).unwrap()
    }

    #[test]
    fn a_pulse_gives_its_volume_through_the_calibration_and_ends() {
        let sim = Simulator::seeded(2);
        let cx = context(&sim, 1.0);
        let kind = pulse();
        let s = settings(&kind, &[("volume", json!(0.2))]);
        let mut p = (kind.make)(&cx);
        let (_, v0, _) = sim.culture();
        p.apply(&sim, &s).unwrap();
        assert_eq!(sim.pin(MEDIA_PUMP_PIN).map(|p| p.0), Some(true));
        // 0.2 ml at 0.5 ml/s: 0.4 s (simulated time is real time here), woken 50 ms early
        // and finished by a precise sleep.
        let wait = p.period(&s).unwrap();
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(350),
            "{wait:?}"
        );
        std::thread::sleep(wait);
        p.tick(&sim, &s).unwrap();
        assert!(p.finished());
        assert_eq!(sim.pin(MEDIA_PUMP_PIN).map(|p| p.0), Some(false));
        let (_, v1, _) = sim.culture();
        assert!((v1 - v0 - 0.2).abs() < 0.01, "{v0} → {v1}");
        let r = p.take_readings();
        assert_eq!(r[0].metric, "media_ml");
        assert!((r[0].value - 0.2).abs() < 0.01);
        // A dose shorter than the runtime's finest tick is given at once.
        let mut short = (kind.make)(&cx);
        short
            .apply(&sim, &settings(&kind, &[("volume", json!(0.01))]))
            .unwrap();
        assert!(short.finished());
        assert_eq!(sim.pin(MEDIA_PUMP_PIN).map(|p| p.0), Some(false));
        // A pump nobody calibrated is refused with what to do.
        let s = settings(&kind, &[("pump", json!("acid"))]);
        let e = (kind.make)(&cx).apply(&sim, &s).unwrap_err().to_string();
        assert!(e.contains("no calibration for pump \"acid\""), "{e}");
    }

    #[test]
    fn a_turbidostat_holds_the_culture_near_its_target() {
        // Fast simulated time: the culture grows from OD 0.05 past the target within hours.
        let sim = Simulator::with_models(
            Default::default(),
            crate::hardware::simulator::Culture {
                initial_od: 0.9,
                ..Default::default()
            },
            3,
            100.0,
        );
        // The jobs' clock runs as fast as the simulator's, as in the agent.
        let cx = context(&sim, 100.0);
        let kind = turbidostat();
        let s = settings(&kind, &[("target_od", json!(1.0)), ("volume", json!(1.0))]);
        let mut t = (kind.make)(&cx);
        t.apply(&sim, &s).unwrap();
        let mut doses = 0;
        // Three simulated hours in 10-minute steps; the OD is "measured" before each check.
        for _ in 0..18 {
            sim.advance(600.0);
            let (od, _, _) = sim.culture();
            cx.bus.put("od_reading", "od", cx.now() + 1.0, od);
            t.tick(&sim, &s).unwrap();
            doses += t
                .take_readings()
                .iter()
                .filter(|r| r.metric == "media_ml")
                .count();
        }
        let (od, volume, _) = sim.culture();
        assert!(doses > 0, "it dosed");
        // Each dose of 1 ml into 14 ml dilutes by 1/15; with a check every 10 minutes the OD
        // stays within one dose plus ten minutes' growth of the target.
        assert!((0.85..1.1).contains(&od), "OD {od}");
        assert!((volume - 14.0).abs() < 0.05, "volume {volume}");
        t.release(&sim, &s).unwrap();
    }

    #[test]
    fn a_chemostat_doses_at_its_dilution_rate() {
        let sim = Simulator::seeded(3);
        let cx = context(&sim, 1.0);
        let kind = chemostat();
        let s = settings(
            &kind,
            &[("dilution_rate", json!(0.5)), ("volume", json!(0.7))],
        );
        let c = (kind.make)(&cx);
        // 0.7 ml / (0.5/h · 14 ml) = 0.1 h between doses.
        assert_eq!(c.period(&s), Some(Duration::from_secs(360)));
    }
}
