//! The node's dosing pumps: for each pump (by name: `media`, `waste`, `alt_media`) the pin that
//! switches it and how many millilitres it moves per second. Kept in `calibrations.json` in the
//! state directory, so they are stored per node and pump and survive restarts; the board's own
//! (the simulator knows its pumps) fill in pumps never calibrated here. Changed by the leader's
//! `set_pump_calibration` command and published retained on the node's calibrations topic.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use trellis_proto::{Calibrations, PumpCalibration};

/// The file in the state directory.
const STORE_FILE: &str = "calibrations.json";
/// Most pumps one node keeps.
pub const MAX_PUMPS: usize = 16;

/// The node's pumps, shared by every dosing job.
#[derive(Clone, Default)]
pub struct Pumps {
    pumps: Arc<Mutex<BTreeMap<String, PumpCalibration>>>,
    store: Option<PathBuf>,
}

impl Pumps {
    /// The board's pumps with the ones kept in `state_dir` over them. A file that cannot be read
    /// is reported (and left for a person to look at), not silently replaced.
    pub fn load(board: Vec<PumpCalibration>, state_dir: Option<&Path>) -> (Self, Option<String>) {
        let mut pumps: BTreeMap<String, PumpCalibration> =
            board.into_iter().map(|c| (c.pump.clone(), c)).collect();
        let store = state_dir.map(|d| d.join(STORE_FILE));
        let mut problem = None;
        if let Some(path) = &store {
            match std::fs::read(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problem = Some(format!("cannot read {}: {e}", path.display())),
                Ok(bytes) => match serde_json::from_slice::<Calibrations>(&bytes) {
                    Ok(kept) => {
                        for c in kept.pumps {
                            match c.check() {
                                Ok(()) => {
                                    pumps.insert(c.pump.clone(), c);
                                }
                                Err(e) => {
                                    problem = Some(format!("{}: {e}", path.display()));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        problem = Some(format!("{} is not a calibration list: {e}", path.display()))
                    }
                },
            }
        }
        (
            Pumps {
                pumps: Arc::new(Mutex::new(pumps)),
                store,
            },
            problem,
        )
    }

    /// A pump's calibration, or why there is none.
    pub fn get(&self, pump: &str) -> Result<PumpCalibration, String> {
        self.lock().get(pump).cloned().ok_or_else(|| {
            format!(
                "this node has no calibration for pump {pump:?}; calibrate it first (setPumpCalibration)"
            )
        })
    }

    /// Every pump, by name.
    pub fn all(&self) -> Calibrations {
        Calibrations {
            pumps: self.lock().values().cloned().collect(),
        }
    }

    /// Stores a pump's calibration (checked), replacing its old one, and keeps the list on disk.
    pub fn set(&self, calibration: PumpCalibration) -> Result<String, String> {
        calibration.check()?;
        let mut pumps = self.lock();
        if !pumps.contains_key(&calibration.pump) && pumps.len() >= MAX_PUMPS {
            return Err(format!("this node keeps at most {MAX_PUMPS} pumps"));
        }
        if let Some(other) = pumps
            .values()
            .find(|c| c.pin == calibration.pin && c.pump != calibration.pump)
        {
            return Err(format!(
                "pin {} is pump {}'s; one pump per pin",
                calibration.pin, other.pump
            ));
        }
        let message = format!(
            "pump {} on pin {}: {} ml/s",
            calibration.pump, calibration.pin, calibration.ml_per_second
        );
        let mut next = pumps.clone();
        next.insert(calibration.pump.clone(), calibration);
        if let Some(path) = &self.store {
            let list = Calibrations {
                pumps: next.values().cloned().collect(),
            };
            let bytes = serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot keep it: {e}"))?;
            }
            crate::files::write_private(path, &bytes, 0o600)
                .map_err(|e| format!("cannot keep it in {}: {e}", path.display()))?;
        }
        *pumps = next;
        Ok(message)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PumpCalibration>> {
        self.pumps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(name: &str, pin: u8, rate: f64) -> PumpCalibration {
        PumpCalibration {
            pump: name.into(),
            pin,
            ml_per_second: rate,
        }
    }

    #[test]
    fn calibrations_are_kept_per_pump_over_the_boards_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let board = vec![pump("media", 23, 0.5), pump("waste", 24, 1.0)];
        let (pumps, problem) = Pumps::load(board.clone(), Some(dir.path()));
        assert_eq!(problem, None);
        assert_eq!(pumps.get("media").unwrap().ml_per_second, 0.5);
        assert!(
            pumps
                .get("acid")
                .unwrap_err()
                .contains("no calibration for pump \"acid\"")
        );
        pumps.set(pump("media", 23, 0.62)).unwrap();
        let e = pumps.set(pump("acid", 24, 0.1)).unwrap_err();
        assert_eq!(e, "pin 24 is pump waste's; one pump per pin");
        let e = pumps.set(pump("acid", 5, -1.0)).unwrap_err();
        assert!(e.contains("ml_per_second -1"), "{e}");

        let (again, problem) = Pumps::load(board, Some(dir.path()));
        assert_eq!(problem, None);
        assert_eq!(again.get("media").unwrap().ml_per_second, 0.62);
        assert_eq!(again.get("waste").unwrap().ml_per_second, 1.0);
        assert_eq!(again.all().pumps.len(), 2);
    }
}
