//! One module per page.

pub mod access;
pub mod audit;
pub mod auth;
pub mod node;
pub mod nodes;
