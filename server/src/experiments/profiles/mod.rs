//! Experiment profiles: scheduled experiments in the YAML format Pioreactor users write, so their
//! profiles run unchanged where Trellis has the jobs they name. `expr` is the expression
//! language; `parse` reads and checks a profile, every error with its line and column.

pub mod expr;
pub mod parse;
pub mod plan;
pub mod service;
