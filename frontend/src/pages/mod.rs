//! One module per page.

pub mod node;
pub mod nodes;
