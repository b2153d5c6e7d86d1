//! The one error policy of the API. Every error a client sees carries a stable `extensions.code`:
//! `UNAUTHENTICATED`, `FORBIDDEN`, `RATE_LIMITED`, `NOT_FOUND`, `BAD_REQUEST`, `UNAVAILABLE` or
//! `INTERNAL`. Database and broker error text is logged on the server and never sent to a client:
//! an internal failure reaches the caller only as `INTERNAL` with a generic message, so it leaks no
//! schema, paths or credentials. A database outage (unreachable, locked, read-only, disk full) is
//! `UNAVAILABLE` with its kind in words (`the database cannot be reached: try again shortly`).

use async_graphql::ErrorExtensions;

/// Errors of the service layer.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into a client message
/// through a blanket `From`, which would send database text to clients. The only way to a
/// client is the `From` below, which redacts.
#[derive(Debug)]
pub enum ApiError {
    /// No valid credentials were sent (or they were wrong).
    Unauthenticated(String),
    /// The caller is known but may not do this.
    Forbidden(String),
    /// Too many attempts; the message says when to retry.
    RateLimited(String),
    /// The thing asked for does not exist.
    NotFound(String),
    /// The caller's input was wrong; the message says what.
    BadRequest(String),
    /// The request clashes with the current state (a name taken, a node held by another
    /// experiment); the message says with what.
    Conflict(String),
    /// A node or the broker could not do it now (not connected, no answer); worth retrying.
    Unavailable(String),
    /// The database failed.
    Database(sea_orm::DbErr),
    /// Anything else that is our fault.
    Internal(String),
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Database(e)
    }
}

/// What clients are told about an internal failure.
pub const INTERNAL_MESSAGE: &str = "internal server error";

impl ApiError {
    /// The full message, for logs (internal errors included).
    pub fn log_message(&self) -> String {
        match self {
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::RateLimited(m)
            | ApiError::BadRequest(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => m.clone(),
            ApiError::Database(e) => format!("database error: {e}"),
            ApiError::Internal(m) => format!("internal error: {m}"),
        }
    }

    /// The reason a database failure is an outage (see [`crate::infra::db::outage`]).
    fn outage(&self) -> Option<&'static str> {
        match self {
            ApiError::Database(e) => crate::infra::db::outage(e),
            _ => None,
        }
    }

    /// The message a client may see: internal details replaced by a generic text.
    pub fn public_message(&self) -> String {
        if let Some(why) = self.outage() {
            return format!("{why}: try again shortly");
        }
        match self {
            ApiError::Database(_) | ApiError::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            other => other.log_message(),
        }
    }

    /// The HTTP status for this error when it ends a request before GraphQL runs.
    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        if self.outage().is_some() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs an internal failure with its whole text (the client gets only [`INTERNAL_MESSAGE`]);
    /// `during` says what was being done.
    pub fn log_if_internal(&self, during: &str) {
        if let Some(why) = self.outage() {
            crate::infra::db::note_outage(why);
        }
        if matches!(self, ApiError::Database(_) | ApiError::Internal(_)) {
            tracing::error!(error = self.log_message(), "internal error in {during}");
        }
    }

    /// The stable code sent as `extensions.code`.
    pub fn code(&self) -> &'static str {
        if self.outage().is_some() {
            return "UNAVAILABLE";
        }
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::RateLimited(_) => "RATE_LIMITED",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Database(_) | ApiError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        e.log_if_internal("a GraphQL resolver");
        let code = e.code();
        async_graphql::Error::new(e.public_message()).extend_with(|_, ext| ext.set("code", code))
    }
}

/// Result of the service layer.
pub type ApiResult<T> = Result<T, ApiError>;
