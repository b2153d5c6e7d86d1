//! GraphQL object types that wrap the domains' models, one file per domain.

mod access;
mod app;
mod audit;
mod deployment;
mod enroll;
mod experiment;
mod image;
mod job;
mod lists;
mod live_frame;
mod node;
mod profile;
mod telemetry;

pub use access::*;
pub use app::*;
pub use audit::*;
pub use deployment::*;
pub use enroll::*;
pub use experiment::*;
pub use image::*;
pub use job::*;
pub use lists::*;
pub use live_frame::*;
pub use node::*;
pub use profile::*;
pub use telemetry::*;
