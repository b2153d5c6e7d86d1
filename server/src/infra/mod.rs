//! Infrastructure every domain uses: the database connection, listeners and their connection
//! limits, the leader's TLS certificate, the one place certificates and private files are made,
//! and the supervisor that starts a panicked background loop again.

pub mod db;
pub mod net;
pub mod pki;
pub mod supervise;
pub mod tls;
