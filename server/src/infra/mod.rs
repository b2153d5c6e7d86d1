//! Infrastructure every domain uses: the database connection, listeners and their connection
//! limits, the leader's TLS certificate, and the one place certificates and private files are made.

pub mod db;
pub mod net;
pub mod pki;
pub mod tls;
