//! Work the agent does for the leader: the command runner (each command once, however often QoS 1
//! delivers it), the job runtime (supervised jobs with a state machine and live settings, kept on
//! disk), and the kinds of job this node offers.

pub mod calibrations;
pub mod commands;
pub mod context;
pub mod kinds;
pub mod runtime;
pub mod telemetry;
