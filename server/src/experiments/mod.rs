//! Experiments: named runs of work across nodes. A node belongs to at most one running
//! experiment; what it measures, logs and runs while it belongs carries the experiment.

pub mod profiles;
pub mod service;

pub use service::{
    ExperimentEvent, ExperimentEventKind, Experiments, Membership, membership_changes,
};
