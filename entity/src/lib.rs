//! SeaORM entities for the Trellis database. The schema itself is owned by the `migration` crate.

pub mod node;
