//! Reconnect backoff for MQTT clients (the agent's link and enrollment, the leader's bridge):
//! capped exponential with jitter. Each wait is drawn between half and all of the current step
//! (AWS's "equal jitter"), the step doubles after every failure up to the cap, and a good
//! connection resets it. The jitter spreads a fleet out: when a broker restarts, agents that
//! all lost it at the same moment do not all come back in the same second.

use std::time::Duration;

/// The backoff of one client.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Steps from `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Backoff {
            first,
            max,
            step: first,
        }
    }

    /// The wait before the next attempt (between half and all of the current step), and the
    /// step doubled for the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.step.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// After a good connection: back to the first step.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_cap_with_jitter_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(4000));
        let steps = [250u64, 500, 1000, 2000, 4000, 4000, 4000];
        for step in steps {
            let w = b.next_wait();
            assert!(
                w >= ms(step / 2) && w <= ms(step),
                "{w:?} for a step of {step} ms"
            );
        }
        b.reset();
        assert!(b.next_wait() <= ms(250));
        // A first step over the cap is the cap.
        let mut b = Backoff::new(ms(5000), ms(1000));
        assert!(b.next_wait() <= ms(1000));
    }

    #[test]
    fn a_fleet_that_failed_together_spreads_out() {
        // 200 clients, each after five failures at the same moments: their sixth attempts fall
        // over a window of seconds, never all in one second.
        let max = Duration::from_secs(8);
        let mut at: Vec<f64> = (0..200)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_millis(250), max);
                (0..5).map(|_| b.next_wait().as_secs_f64()).sum()
            })
            .collect();
        at.sort_by(f64::total_cmp);
        let busiest = at
            .iter()
            .map(|t| at.iter().filter(|u| **u >= *t && **u < t + 1.0).count())
            .max()
            .unwrap_or(0);
        assert!(
            busiest < 120,
            "{busiest} of 200 came back within one second"
        );
        assert!(at[199] - at[0] > 1.5, "spread {:.2} s", at[199] - at[0]);
    }
}
