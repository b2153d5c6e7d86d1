//! `growth_rate`: estimates the culture's specific growth rate from optical density readings (the
//! latest `od` of job `od_job`), as Pioreactor's `growth_rate_calculating` does, with a Kalman
//! filter over `ln(OD)`.
//!
//! State `x = [l, r]`: `l = ln(OD)` and the growth rate `r` (per hour). Between two readings
//! `Δt` hours apart, exponential growth gives `l ← l + r·Δt`, `r ← r`, with the growth rate drifting
//! as white noise of intensity `q = rate_noise²` (so `Q = q·[[Δt³/3, Δt²/2], [Δt²/2, Δt]]`).
//! A reading measures `l` with variance `R = od_noise²` (a relative OD noise is an absolute noise
//! in `ln(OD)`). Predict: `x ← F·x`, `P ← F·P·Fᵀ + Q`; update with `y = ln(OD) − l`,
//! `S = P₀₀ + R`, `K = P·Hᵀ/S`, `x ← x + K·y`, `P ← (I − K·H)·P`.
//!
//! A dose dilutes the culture at once: when any job reported a dose (`media_ml`) since the last
//! reading, `l` is set to the new reading and its variance reset, keeping `r`, so dilution is not
//! read as negative growth. Readings: `growth_rate` (1/h) and `od_filtered`.

use std::time::Duration;

use trellis_proto::{KindSpec, Settings};

use super::{Driver, Kind, Measurement, float, number, string, text};
use crate::{
    hardware::{Hardware, HardwareError},
    jobs::context::Context,
};

/// The kind's declaration.
pub fn kind() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "growth_rate".into(),
            description:
                "Estimate the growth rate from optical density (a Kalman filter over ln OD)".into(),
            settings: vec![
                string(
                    "od_job",
                    "od_reading",
                    true,
                    "The job whose `od` readings are followed",
                )
                .into(),
                float(
                    "interval",
                    Some("s"),
                    (0.1, 3600.0),
                    5.0,
                    true,
                    "How often to look for a new reading",
                )
                .into(),
                float(
                    "od_noise",
                    None,
                    (0.0001, 1.0),
                    0.01,
                    true,
                    "Relative noise of an OD reading",
                )
                .into(),
                float(
                    "rate_noise",
                    Some("1/h per √h"),
                    (0.0001, 10.0),
                    0.05,
                    true,
                    "How fast the growth rate may drift",
                )
                .into(),
            ],
            open: false,
        },
        make: |cx| Box::new(Growth::new(cx)),
        restarts: true,
    }
}

/// The filter: state and covariance.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    l: f64,
    r: f64,
    p: [[f64; 2]; 2],
}

impl Filter {
    /// A filter starting at `od` with an unknown growth rate.
    pub fn new(od: f64, od_noise: f64) -> Self {
        Filter {
            l: od.ln(),
            r: 0.0,
            p: [[od_noise * od_noise, 0.0], [0.0, 1.0]],
        }
    }

    /// Takes a reading `dt` hours after the last one.
    pub fn step(&mut self, od: f64, dt: f64, od_noise: f64, rate_noise: f64) {
        let q = rate_noise * rate_noise;
        let [[p00, p01], [p10, p11]] = self.p;
        // Predict.
        self.l += self.r * dt;
        let a00 = p00 + dt * (p10 + p01) + dt * dt * p11 + q * dt.powi(3) / 3.0;
        let a01 = p01 + dt * p11 + q * dt * dt / 2.0;
        let a10 = p10 + dt * p11 + q * dt * dt / 2.0;
        let a11 = p11 + q * dt;
        // Update with H = [1, 0].
        let s = a00 + od_noise * od_noise;
        let (k0, k1) = (a00 / s, a10 / s);
        let y = od.ln() - self.l;
        self.l += k0 * y;
        self.r += k1 * y;
        self.p = [
            [(1.0 - k0) * a00, (1.0 - k0) * a01],
            [a10 - k1 * a00, a11 - k1 * a01],
        ];
    }

    /// Starts `l` again at `od` (after a dilution), keeping the growth rate.
    pub fn reanchor(&mut self, od: f64, od_noise: f64) {
        self.l = od.ln();
        self.p[0] = [od_noise * od_noise, 0.0];
        self.p[1][0] = 0.0;
    }

    /// The growth rate, per hour.
    pub fn rate(&self) -> f64 {
        self.r
    }

    /// The filtered optical density.
    pub fn od(&self) -> f64 {
        self.l.exp()
    }
}

struct Growth {
    cx: Context,
    filter: Option<Filter>,
    /// The time of the last reading used (simulated seconds).
    last: f64,
    readings: Vec<Measurement>,
}

impl Growth {
    fn new(cx: &Context) -> Self {
        Growth {
            cx: cx.clone(),
            filter: None,
            last: f64::NEG_INFINITY,
            readings: Vec::new(),
        }
    }
}

impl Driver for Growth {
    fn apply(&mut self, _hw: &dyn Hardware, _settings: &Settings) -> Result<(), HardwareError> {
        Ok(())
    }

    fn period(&self, settings: &Settings) -> Option<Duration> {
        number(settings, "interval")
            .ok()
            .map(Duration::from_secs_f64)
    }

    fn tick(&mut self, _hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let Some((at, od)) = self.cx.bus.latest(text(settings, "od_job")?, "od") else {
            return Ok(());
        };
        if at <= self.last || od <= 0.0 {
            return Ok(());
        }
        let (od_noise, rate_noise) = (
            number(settings, "od_noise")?,
            number(settings, "rate_noise")?,
        );
        let diluted = self
            .cx
            .bus
            .newest("media_ml")
            .is_some_and(|d| d > self.last);
        match &mut self.filter {
            None => self.filter = Some(Filter::new(od, od_noise)),
            Some(f) if diluted => f.reanchor(od, od_noise),
            Some(f) => f.step(od, (at - self.last) / 3600.0, od_noise, rate_noise),
        }
        self.last = at;
        if let Some(f) = &self.filter {
            self.readings
                .push(Measurement::new("growth_rate", f.rate(), Some("1/h")));
            self.readings
                .push(Measurement::new("od_filtered", f.od(), Some("OD")));
        }
        Ok(())
    }

    fn release(&mut self, _hw: &dyn Hardware, _settings: &Settings) -> Result<(), HardwareError> {
        Ok(())
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        std::mem::take(&mut self.readings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_finds_the_rate_of_exponential_growth_through_noise() {
        // OD = 0.05·e^(0.5·t), read every 5 minutes with ±1 % noise, for 4 hours.
        let mut noise = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            (noise >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let dt = 5.0 / 60.0;
        let mut f = Filter::new(0.05, 0.01);
        for i in 1..=48 {
            let t = f64::from(i) * dt;
            let od = 0.05 * (0.5 * t).exp() * (1.0 + 0.01 * next());
            f.step(od, dt, 0.01, 0.05);
        }
        assert!((f.rate() - 0.5).abs() < 0.03, "rate {}", f.rate());
        let truth = 0.05 * (0.5f64 * 4.0).exp();
        assert!(
            (f.od() - truth).abs() < truth * 0.01,
            "od {} vs {truth}",
            f.od()
        );
        // A dilution is not read as decline: re-anchored, the rate stays.
        f.reanchor(truth * 14.0 / 15.0, 0.01);
        f.step(truth * 14.0 / 15.0 * (0.5 * dt).exp(), dt, 0.01, 0.05);
        assert!(
            (f.rate() - 0.5).abs() < 0.05,
            "rate after a dose {}",
            f.rate()
        );
    }
}
