//! One module per page.

pub mod access;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod deployment;
pub mod deployments;
pub mod experiment;
pub mod experiments;
pub mod node;
pub mod nodes;
pub mod profiles;
