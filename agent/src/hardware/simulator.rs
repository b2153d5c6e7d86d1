//! A simulated board with physical models, so jobs behave on a laptop as on a bioreactor:
//!
//! - a culture vessel warmed by a heater on PWM pin [`HEATER_PIN`] and losing heat to the room
//!   (Newton's law of cooling), read by temperature sensor 0:
//!   `dT/dt = (P·duty − k·(T − T_room)) / C`;
//! - a stirrer whose motor is on PWM pin [`STIRRER_PIN`] and whose speed, read by the tachometer
//!   on [`TACH_PIN`], follows the duty with inertia (a first-order lag) and some measurement noise:
//!   `dω/dt = (ω_max·duty − ω) / τ`, read as `ω·(1 + ε)` with `ε` uniform in ±[`RPM_NOISE`].
//!
//! Time is real elapsed time (plus [`Simulator::advance`] in tests). The noise comes from a
//! generator seeded by the node, so nodes differ but runs repeat.

use std::{sync::Mutex, time::Instant};

use super::{Hardware, HardwareError, check_duty, check_frequency, check_pin};

/// BCM pin the simulated heater is wired to.
pub const HEATER_PIN: u8 = 18;
/// BCM pin the simulated stirrer's motor driver is wired to.
pub const STIRRER_PIN: u8 = 13;
/// BCM pin the simulated stirrer's tachometer (hall sensor) is wired to.
pub const TACH_PIN: u8 = 25;
/// Stirrer speed at 100 % duty, rpm.
pub const STIRRER_MAX_RPM: f64 = 2000.0;
/// Stirrer time constant, s: how fast its speed follows the duty.
pub const STIRRER_TAU_S: f64 = 0.5;
/// Relative noise of a tachometer reading (±).
pub const RPM_NOISE: f64 = 0.01;

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

#[derive(Debug)]
struct State {
    levels: [bool; 28],
    duty: [f64; 28],
    frequency: [f64; 28],
    temperature_c: f64,
    rpm: f64,
    noise: u64,
    last: Instant,
}

/// The simulator backend.
#[derive(Debug)]
pub struct Simulator {
    vessel: Vessel,
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

    /// Like [`Simulator::new`], with measurement noise from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self::with_vessel(Vessel::default(), seed)
    }

    /// A simulator with other physical constants.
    pub fn with_vessel(vessel: Vessel, seed: u64) -> Self {
        Simulator {
            vessel,
            state: Mutex::new(State {
                levels: [false; 28],
                duty: [0.0; 28],
                frequency: [0.0; 28],
                temperature_c: vessel.ambient_c,
                rpm: 0.0,
                // xorshift needs a state that is not zero.
                noise: seed | 1,
                last: Instant::now(),
            }),
        }
    }

    /// What a pin is driven with now: its level, and its PWM frequency and duty (0 when none).
    pub fn pin(&self, pin: u8) -> Option<(bool, f64, f64)> {
        let s = self.lock();
        let i = usize::from(pin);
        (i < 28).then(|| (s.levels[i], s.frequency[i], s.duty[i]))
    }

    /// Advances the model by `dt` seconds of simulated time (on top of real time).
    pub fn advance(&self, dt: f64) {
        let mut s = self.lock();
        self.integrate(&mut s, dt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn catch_up(&self, s: &mut State) {
        let now = Instant::now();
        let dt = now.duration_since(s.last).as_secs_f64();
        s.last = now;
        self.integrate(s, dt);
    }

    /// The duty a pin is driven with: its PWM duty, or 1 when held high.
    fn drive(s: &State, pin: u8) -> f64 {
        if s.levels[usize::from(pin)] {
            1.0
        } else {
            s.duty[usize::from(pin)]
        }
    }

    /// Integrates both models over `dt` seconds, in steps of at most 50 ms (explicit Euler; the
    /// stirrer's 0.5 s time constant needs the small step, the vessel's 2000 s does not care).
    fn integrate(&self, s: &mut State, mut dt: f64) {
        let v = self.vessel;
        let heater = Self::drive(s, HEATER_PIN);
        let stirrer = Self::drive(s, STIRRER_PIN);
        while dt > 0.0 {
            let h = dt.min(0.05);
            let power_in = v.heater_watts * heater;
            let power_out = v.loss_w_per_k * (s.temperature_c - v.ambient_c);
            s.temperature_c += (power_in - power_out) * h / v.heat_capacity;
            s.rpm += (STIRRER_MAX_RPM * stirrer - s.rpm) * h / STIRRER_TAU_S;
            dt -= h;
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
