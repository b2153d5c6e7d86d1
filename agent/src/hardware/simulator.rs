//! A simulated board with physical models, so jobs behave on a laptop as on a bioreactor. Each
//! model, with `d` for the drive of its pin (the PWM duty, 1 when held high, 0 when low):
//!
//! - **Vessel temperature**: a heater on [`HEATER_PIN`] warms the vessel, which loses heat to the
//!   room (Newton's law of cooling), read by DS18B20 sensor 0:
//!   `dT/dt = (P·d − k·(T − T_room)) / C`, so `T(t) = T∞ + (T₀ − T∞)·e^(−t·k/C)` with
//!   `T∞ = T_room + P·d/k`.
//! - **Stirrer**: a motor on [`STIRRER_PIN`] whose speed follows its drive with inertia (a
//!   first-order lag), read by a tachometer on [`TACH_PIN`] with noise:
//!   `dω/dt = (ω_max·d − ω) / τ`, read as `ω·(1 + ε)` with `ε` uniform in ±[`RPM_NOISE`].
//! - **Culture**: optical density grows logistically and is diluted by fresh media (volume
//!   balance: media in, waste out). With `Q_in`, `Q_out` the media and waste pumps' flows (ml/s,
//!   each `rate·d`), `V` the volume (ml) and `OD` the optical density:
//!   `dOD/dt = r·OD·(1 − OD/K) − (Q_in/V)·OD` and `dV/dt = Q_in − Q_out`. As in a Pioreactor, the
//!   waste line draws from a tube at [`Culture::waste_tube_ml`]: waste moves only the culture
//!   above it (then air), so running it longer than needed leaves exactly that volume; above
//!   [`Culture::max_volume_ml`] the vessel spills. Without dosing
//!   `OD(t) = K / (1 + (K/OD₀ − 1)·e^(−r·t))`; a dose of `ΔV` ml of media dilutes
//!   `OD → OD·V/(V + ΔV)`.
//! - **LEDs and the photodiode**: an LED's light is proportional to its drive; the OD photodiode,
//!   read by the ADS1115 at [`OD_ADC_ADDRESS`] channel 0, sees the IR LED on [`IR_LED_PIN`]
//!   scattered by the culture: `V = bias + gain·OD·d_IR`, with 0.5 % noise.
//!
//! Every model is integrated exactly between changes of a pin (the solutions above), and in steps
//! of 50 ms while a pump runs (the culture's dilution has no closed form with a changing volume).
//! Time is real elapsed time multiplied by the speed (`--sim-speed`), plus
//! [`Simulator::advance`] in tests. Noise and each culture's growth rate come from a generator
//! seeded by the node, so nodes differ but runs repeat.

use std::{sync::Mutex, time::Instant};

use trellis_proto::PumpCalibration;

use super::{Hardware, HardwareError, check_adc, check_duty, check_frequency, check_pin};

/// BCM pin the simulated heater is wired to.
pub const HEATER_PIN: u8 = 18;
/// BCM pin the simulated stirrer's motor driver is wired to.
pub const STIRRER_PIN: u8 = 13;
/// BCM pin the simulated stirrer's tachometer (hall sensor) is wired to.
pub const TACH_PIN: u8 = 25;
/// BCM pin of the infrared LED whose scattered light measures optical density.
pub const IR_LED_PIN: u8 = 26;
/// BCM pins of the four LED channels A-D (the IR LED is channel A's neighbour, not one of them).
pub const LED_PINS: [u8; 4] = [5, 6, 16, 20];
/// BCM pin of the media pump.
pub const MEDIA_PUMP_PIN: u8 = 23;
/// BCM pin of the waste pump.
pub const WASTE_PUMP_PIN: u8 = 24;
/// BCM pin of the alternative media pump.
pub const ALT_MEDIA_PUMP_PIN: u8 = 22;
/// I2C address of the ADS1115 whose channel 0 reads the OD photodiode.
pub const OD_ADC_ADDRESS: u8 = 0x48;
/// Photodiode volts per unit of optical density with the IR LED fully on.
pub const OD_GAIN_V: f64 = 0.5;
/// Photodiode volts with no scattered light.
pub const OD_BIAS_V: f64 = 0.02;
/// Stirrer speed at 100 % duty, rpm.
pub const STIRRER_MAX_RPM: f64 = 2000.0;
/// Stirrer time constant, s: how fast its speed follows the duty.
pub const STIRRER_TAU_S: f64 = 0.5;
/// Relative noise of a tachometer reading (±).
pub const RPM_NOISE: f64 = 0.01;
/// Relative noise of a photodiode reading (±).
pub const OD_NOISE: f64 = 0.005;
/// Longest step while a pump runs, simulated seconds.
const STEP_S: f64 = 0.05;

/// Physical constants of the simulated vessel.
#[derive(Debug, Clone, Copy)]
pub struct Vessel {
    /// Heater power at 100 % duty, W.
    pub heater_watts: f64,
    /// Heat capacity of vessel and contents, J/K (about 120 ml of water).
    pub heat_capacity: f64,
    /// Heat loss to the room, W/K.
    pub loss_w_per_k: f64,
    /// Room temperature, °C.
    pub ambient_c: f64,
}

impl Default for Vessel {
    fn default() -> Self {
        Vessel {
            heater_watts: 10.0,
            heat_capacity: 500.0,
            loss_w_per_k: 0.25,
            ambient_c: 22.0,
        }
    }
}

/// Constants of the simulated culture and its pumps.
#[derive(Debug, Clone, Copy)]
pub struct Culture {
    /// Specific growth rate `r`, per hour (before the node's own ±10 %).
    pub growth_per_hour: f64,
    /// Carrying capacity `K`, optical density.
    pub capacity_od: f64,
    /// Optical density at start.
    pub initial_od: f64,
    /// Culture volume at start, ml.
    pub initial_volume_ml: f64,
    /// Most the vessel holds, ml; more spills.
    pub max_volume_ml: f64,
    /// Volume at the waste tube's mouth, ml: waste moves nothing below it.
    pub waste_tube_ml: f64,
    /// Media pump flow at full drive, ml/s.
    pub media_ml_per_s: f64,
    /// Waste pump flow at full drive, ml/s.
    pub waste_ml_per_s: f64,
    /// Alternative media pump flow at full drive, ml/s (counted as media).
    pub alt_media_ml_per_s: f64,
}

impl Default for Culture {
    fn default() -> Self {
        Culture {
            growth_per_hour: 0.6,
            capacity_od: 3.0,
            initial_od: 0.05,
            initial_volume_ml: 14.0,
            max_volume_ml: 40.0,
            waste_tube_ml: 14.0,
            media_ml_per_s: 0.5,
            waste_ml_per_s: 1.0,
            alt_media_ml_per_s: 0.5,
        }
    }
}

#[derive(Debug)]
struct State {
    levels: [bool; 28],
    duty: [f64; 28],
    frequency: [f64; 28],
    temperature_c: f64,
    rpm: f64,
    od: f64,
    volume_ml: f64,
    spilled_ml: f64,
    noise: u64,
    last: Instant,
}

/// The simulator backend.
#[derive(Debug)]
pub struct Simulator {
    vessel: Vessel,
    culture: Culture,
    /// This node's growth rate, per second.
    growth_per_s: f64,
    speed: f64,
    state: Mutex<State>,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulator {
    /// A vessel at room temperature, the stirrer still, every pin low.
    pub fn new() -> Self {
        Self::seeded(0)
    }

    /// Like [`Simulator::new`], with noise and this node's growth rate from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self::with_models(Vessel::default(), Culture::default(), seed, 1.0)
    }

    /// A simulator with other physical constants, whose time runs `speed` times faster than real
    /// time.
    pub fn with_models(vessel: Vessel, culture: Culture, seed: u64, speed: f64) -> Self {
        let mut state = State {
            levels: [false; 28],
            duty: [0.0; 28],
            frequency: [0.0; 28],
            temperature_c: vessel.ambient_c,
            rpm: 0.0,
            od: culture.initial_od,
            volume_ml: culture.initial_volume_ml,
            spilled_ml: 0.0,
            // xorshift needs a state that is not zero.
            noise: seed | 1,
            last: Instant::now(),
        };
        let own = 1.0 + 0.1 * Self::noise(&mut state);
        Simulator {
            vessel,
            culture,
            growth_per_s: culture.growth_per_hour * own / 3600.0,
            speed,
            state: Mutex::new(state),
        }
    }

    /// What a pin is driven with now: its level, and its PWM frequency and duty (0 when none).
    pub fn pin(&self, pin: u8) -> Option<(bool, f64, f64)> {
        let s = self.lock();
        let i = usize::from(pin);
        (i < 28).then(|| (s.levels[i], s.frequency[i], s.duty[i]))
    }

    /// The culture now: optical density, volume (ml) and what has spilled (ml).
    pub fn culture(&self) -> (f64, f64, f64) {
        let mut s = self.lock();
        self.catch_up(&mut s);
        (s.od, s.volume_ml, s.spilled_ml)
    }

    /// This node's growth rate, per hour.
    pub fn growth_per_hour(&self) -> f64 {
        self.growth_per_s * 3600.0
    }

    /// Advances the models by `dt` seconds of simulated time (on top of real time).
    pub fn advance(&self, dt: f64) {
        let mut s = self.lock();
        self.catch_up(&mut s);
        self.integrate(&mut s, dt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn catch_up(&self, s: &mut State) {
        let now = Instant::now();
        let dt = now.duration_since(s.last).as_secs_f64() * self.speed;
        s.last = now;
        self.integrate(s, dt);
    }

    /// The drive of a pin: its PWM duty, or 1 when held high.
    fn drive(s: &State, pin: u8) -> f64 {
        if s.levels[usize::from(pin)] {
            1.0
        } else {
            s.duty[usize::from(pin)]
        }
    }

    /// Integrates every model over `dt` simulated seconds with the pins as they are.
    fn integrate(&self, s: &mut State, dt: f64) {
        let c = self.culture;
        let media_in = c.media_ml_per_s * Self::drive(s, MEDIA_PUMP_PIN)
            + c.alt_media_ml_per_s * Self::drive(s, ALT_MEDIA_PUMP_PIN);
        let waste_out = c.waste_ml_per_s * Self::drive(s, WASTE_PUMP_PIN);
        if media_in == 0.0 && waste_out == 0.0 {
            self.exact(s, dt);
            return;
        }
        let mut left = dt;
        while left > 0.0 {
            let h = left.min(STEP_S);
            self.exact(s, h);
            // Media dilutes (OD·V is conserved as V grows); waste takes culture out as it is.
            let added = media_in * h;
            if s.volume_ml + added > 0.0 {
                s.od *= s.volume_ml / (s.volume_ml + added);
            }
            s.volume_ml += added;
            if s.volume_ml > c.waste_tube_ml {
                s.volume_ml = (s.volume_ml - waste_out * h).max(c.waste_tube_ml);
            }
            if s.volume_ml > c.max_volume_ml {
                s.spilled_ml += s.volume_ml - c.max_volume_ml;
                s.volume_ml = c.max_volume_ml;
            }
            left -= h;
        }
    }

    /// The closed-form solutions over `dt` with constant drives and no pump running.
    fn exact(&self, s: &mut State, dt: f64) {
        let v = self.vessel;
        let warm = v.ambient_c + v.heater_watts * Self::drive(s, HEATER_PIN) / v.loss_w_per_k;
        s.temperature_c =
            warm + (s.temperature_c - warm) * (-dt * v.loss_w_per_k / v.heat_capacity).exp();
        let spin = STIRRER_MAX_RPM * Self::drive(s, STIRRER_PIN);
        s.rpm = spin + (s.rpm - spin) * (-dt / STIRRER_TAU_S).exp();
        if s.od > 0.0 {
            let k = self.culture.capacity_od;
            s.od = k / (1.0 + (k / s.od - 1.0) * (-self.growth_per_s * dt).exp());
        }
    }

    /// The next noise sample, uniform in [-1, 1] (xorshift64).
    fn noise(s: &mut State) -> f64 {
        s.noise ^= s.noise << 13;
        s.noise ^= s.noise >> 7;
        s.noise ^= s.noise << 17;
        (s.noise >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

impl Hardware for Simulator {
    fn name(&self) -> &'static str {
        "simulator"
    }

    fn write_pin(&self, pin: u8, high: bool) -> Result<(), HardwareError> {
        check_pin(pin)?;
        let mut s = self.lock();
        self.catch_up(&mut s);
        s.levels[pin as usize] = high;
        s.duty[pin as usize] = 0.0;
        Ok(())
    }

    fn read_pin(&self, pin: u8) -> Result<bool, HardwareError> {
        check_pin(pin)?;
        Ok(self.lock().levels[pin as usize])
    }

    fn set_pwm(&self, pin: u8, frequency_hz: f64, duty: f64) -> Result<(), HardwareError> {
        check_pin(pin)?;
        check_duty(duty)?;
        check_frequency(frequency_hz)?;
        let mut s = self.lock();
        self.catch_up(&mut s);
        s.levels[pin as usize] = false;
        s.duty[pin as usize] = duty;
        s.frequency[pin as usize] = frequency_hz;
        Ok(())
    }

    fn read_temperature(&self, sensor: u8) -> Result<f64, HardwareError> {
        if sensor != 0 {
            return Err(HardwareError::NoSuchSensor(sensor));
        }
        let mut s = self.lock();
        self.catch_up(&mut s);
        Ok(s.temperature_c)
    }

    fn read_rpm(&self, pin: u8) -> Result<f64, HardwareError> {
        check_pin(pin)?;
        if pin != TACH_PIN {
            return Err(HardwareError::NoSuchSensor(pin));
        }
        let mut s = self.lock();
        self.catch_up(&mut s);
        let noise = Self::noise(&mut s);
        Ok((s.rpm * (1.0 + RPM_NOISE * noise)).max(0.0))
    }

    fn read_adc(&self, address: u8, channel: u8) -> Result<f64, HardwareError> {
        check_adc(address, channel)?;
        if address != OD_ADC_ADDRESS {
            return Err(HardwareError::Backend(format!(
                "no I2C device answers at {address:#04x}"
            )));
        }
        let mut s = self.lock();
        self.catch_up(&mut s);
        if channel != 0 {
            // Unconnected inputs read near 0 V.
            return Ok(0.0);
        }
        let signal = OD_GAIN_V * s.od * Self::drive(&s, IR_LED_PIN);
        let noise = Self::noise(&mut s);
        Ok(OD_BIAS_V + signal * (1.0 + OD_NOISE * noise))
    }

    fn speed(&self) -> f64 {
        self.speed
    }

    fn pumps(&self) -> Vec<PumpCalibration> {
        let c = self.culture;
        [
            ("media", MEDIA_PUMP_PIN, c.media_ml_per_s),
            ("waste", WASTE_PUMP_PIN, c.waste_ml_per_s),
            ("alt_media", ALT_MEDIA_PUMP_PIN, c.alt_media_ml_per_s),
        ]
        .into_iter()
        .map(|(pump, pin, rate)| PumpCalibration {
            pump: pump.to_owned(),
            pin,
            ml_per_second: rate,
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heater_warms_the_vessel_towards_its_equilibrium_and_it_cools_back() {
        let sim = Simulator::new();
        let v = Vessel::default();
        assert!((sim.read_temperature(0).unwrap() - v.ambient_c).abs() < 0.01);
        sim.set_pwm(HEATER_PIN, 100.0, 0.5).unwrap();
        // Equilibrium: P·duty = k·ΔT → ΔT = 10·0.5/0.25 = 20 K; time constant C/k = 2000 s.
        sim.advance(20_000.0);
        let hot = sim.read_temperature(0).unwrap();
        assert!((hot - 42.0).abs() < 0.1, "{hot}");
        sim.set_pwm(HEATER_PIN, 100.0, 0.0).unwrap();
        sim.advance(2_000.0);
        let cooled = sim.read_temperature(0).unwrap();
        // One time constant: the excess falls to 1/e (≈ 7.36 K above room).
        assert!(
            (cooled - (22.0 + 20.0 / std::f64::consts::E)).abs() < 0.2,
            "{cooled}"
        );
    }

    #[test]
    fn the_stirrer_follows_its_duty_with_a_first_order_lag() {
        let sim = Simulator::seeded(7);
        sim.set_pwm(STIRRER_PIN, 200.0, 0.25).unwrap();
        // One time constant: 1 − 1/e of the way to 0.25 · 2000 = 500 rpm.
        sim.advance(STIRRER_TAU_S);
        let rpm = sim.read_rpm(TACH_PIN).unwrap();
        let expected = 500.0 * (1.0 - 1.0 / std::f64::consts::E);
        assert!(
            (rpm - expected).abs() < expected * 0.03,
            "{rpm} vs {expected}"
        );
        sim.advance(10.0);
        let readings: Vec<f64> = (0..50).map(|_| sim.read_rpm(TACH_PIN).unwrap()).collect();
        assert!(
            readings
                .iter()
                .all(|r| (r - 500.0).abs() <= 500.0 * RPM_NOISE + 0.5)
        );
        assert!(
            readings.windows(2).any(|w| w[0] != w[1]),
            "the readings carry noise"
        );
        // The same seed repeats, another differs.
        let a = Simulator::seeded(1);
        let b = Simulator::seeded(1);
        let c = Simulator::seeded(2);
        for sim in [&a, &b, &c] {
            sim.set_pwm(STIRRER_PIN, 200.0, 0.5).unwrap();
            sim.advance(5.0);
        }
        let (ra, rb, rc) = (
            a.read_rpm(TACH_PIN).unwrap(),
            b.read_rpm(TACH_PIN).unwrap(),
            c.read_rpm(TACH_PIN).unwrap(),
        );
        assert!(
            (ra - rb).abs() < 1.0 && (ra - rc).abs() > 1e-9,
            "{ra} {rb} {rc}"
        );
        assert_eq!(sim_err(), Err(HardwareError::NoSuchSensor(24)));
    }

    #[test]
    fn the_culture_grows_logistically_as_the_analytic_solution_says() {
        let sim = Simulator::seeded(11);
        let c = Culture::default();
        let r = sim.growth_per_hour() / 3600.0;
        assert!(
            (sim.growth_per_hour() - 0.6).abs() <= 0.06 + 1e-12,
            "within the node's ±10 %"
        );
        // In pieces of varying length, as reads at odd moments would take them.
        let mut t = 0.0;
        for piece in [1.0, 600.0, 3.5, 7200.0, 0.01, 20_000.0] {
            sim.advance(piece);
            t += piece;
        }
        let expected =
            c.capacity_od / (1.0 + (c.capacity_od / c.initial_od - 1.0) * (-r * t).exp());
        let (od, volume, _) = sim.culture();
        // Real time also passes while the test runs: a few ms of growth at most.
        assert!(
            (od - expected).abs() < expected * 1e-4,
            "{od} vs {expected}"
        );
        assert_eq!(volume, c.initial_volume_ml);
        // Another node's culture grows at another rate.
        assert_ne!(
            Simulator::seeded(12).growth_per_hour(),
            sim.growth_per_hour()
        );
    }

    #[test]
    fn media_dilutes_the_culture_and_waste_keeps_the_volume() {
        let c = Culture {
            growth_per_hour: 0.0,
            ..Culture::default()
        };
        let sim = Simulator::with_models(Vessel::default(), c, 5, 1.0);
        // 2 s of media at 0.5 ml/s: 1 ml into 14 ml.
        sim.write_pin(MEDIA_PUMP_PIN, true).unwrap();
        sim.advance(2.0);
        sim.write_pin(MEDIA_PUMP_PIN, false).unwrap();
        let (od, volume, _) = sim.culture();
        assert!((volume - 15.0).abs() < 0.01, "{volume}");
        let diluted = c.initial_od * 14.0 / 15.0;
        assert!((od - diluted).abs() < diluted * 1e-3, "{od} vs {diluted}");
        // 1 s of waste at 1 ml/s takes the extra ml out and leaves the density as it was.
        sim.write_pin(WASTE_PUMP_PIN, true).unwrap();
        sim.advance(1.0);
        sim.write_pin(WASTE_PUMP_PIN, false).unwrap();
        let (od_after, volume, _) = sim.culture();
        assert!((volume - 14.0).abs() < 0.01, "{volume}");
        assert!((od_after - od).abs() < 1e-9);
        // Waste takes nothing below its tube; media beyond the vessel spills.
        sim.write_pin(WASTE_PUMP_PIN, true).unwrap();
        sim.advance(60.0);
        assert_eq!(sim.culture().1, c.waste_tube_ml);
        sim.write_pin(WASTE_PUMP_PIN, false).unwrap();
        sim.write_pin(MEDIA_PUMP_PIN, true).unwrap();
        sim.advance(100.0);
        let (_, volume, spilled) = sim.culture();
        assert_eq!(volume, c.max_volume_ml);
        assert!((spilled - 24.0).abs() < 0.01, "{spilled}");
    }

    #[test]
    fn the_photodiode_sees_the_culture_only_in_the_ir_leds_light() {
        let sim = Simulator::seeded(9);
        assert_eq!(sim.read_adc(OD_ADC_ADDRESS, 0).unwrap(), OD_BIAS_V);
        sim.set_pwm(IR_LED_PIN, 1000.0, 1.0).unwrap();
        let od = sim.culture().0;
        let v = sim.read_adc(OD_ADC_ADDRESS, 0).unwrap();
        let expected = OD_BIAS_V + OD_GAIN_V * od;
        assert!(
            (v - expected).abs() <= OD_GAIN_V * od * OD_NOISE + 1e-9,
            "{v} vs {expected}"
        );
        assert!(
            sim.read_adc(0x49, 0)
                .unwrap_err()
                .to_string()
                .contains("0x49")
        );
        assert!(
            sim.read_adc(0x20, 0)
                .unwrap_err()
                .to_string()
                .contains("not an ADS1115")
        );
    }

    #[test]
    fn simulated_time_runs_at_the_given_speed() {
        let sim = Simulator::with_models(Vessel::default(), Culture::default(), 1, 1000.0);
        sim.set_pwm(HEATER_PIN, 100.0, 1.0).unwrap();
        let start = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let t = sim.read_temperature(0).unwrap();
        let simulated = start.elapsed().as_secs_f64() * 1000.0;
        // About 200 simulated seconds of full heat: T = 62 − 40·e^(−t/2000).
        let at = |secs: f64| 62.0 - 40.0 * (-secs / 2000.0).exp();
        assert!(t > at(190.0) && t <= at(simulated + 1.0), "{t}");
    }

    fn sim_err() -> Result<f64, HardwareError> {
        Simulator::new().read_rpm(24)
    }

    #[test]
    fn bad_pins_duties_and_sensors_are_named() {
        let sim = Simulator::new();
        assert_eq!(sim.write_pin(40, true), Err(HardwareError::NoSuchPin(40)));
        assert_eq!(
            sim.set_pwm(18, 100.0, 1.5),
            Err(HardwareError::BadDuty(1.5))
        );
        assert_eq!(sim.read_temperature(3), Err(HardwareError::NoSuchSensor(3)));
        sim.write_pin(17, true).unwrap();
        assert!(sim.read_pin(17).unwrap());
    }
}
