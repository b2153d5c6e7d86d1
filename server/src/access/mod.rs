//! Users, roles, sessions and API tokens.
//!
//! - Passwords are hashed with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).
//! - Session and API tokens are 256-bit random strings; only their SHA-256 is stored, so a database
//!   leak gives no usable token (a hash of a high-entropy secret needs no slow KDF).
//! - Every request looks its token up again, so revoking a token or deleting a user takes effect
//!   at once.
//! - Login attempts are rate-limited per (username, client address) and per address.

pub mod audit;
mod rate_limit;
mod secrets;
mod sessions;
mod tokens;
mod users;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use sea_orm::DatabaseConnection;

use crate::error::{ApiError, ApiResult};

pub use rate_limit::*;
pub use secrets::*;
pub use sessions::*;
pub use users::*;

/// What a caller may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, async_graphql::Enum)]
pub enum Role {
    /// Read and subscribe only.
    Viewer,
    /// Run jobs, deploy, manage nodes.
    Operator,
    /// Everything, users included.
    Admin,
}

impl Role {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// A role read from the database. A value that is none of the roles is an error, not a
    /// silent default: it means the database was changed by hand or by a newer version.
    pub fn stored(s: &str) -> ApiResult<Role> {
        Role::parse(s).ok_or_else(|| {
            ApiError::Internal(format!(
                "stored role {s:?} is not one of viewer, operator, admin"
            ))
        })
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The user behind the call (a token's creator for API tokens).
    pub user_id: String,
    /// The user's name.
    pub username: String,
    /// The role in force: the user's, or the token's.
    pub role: Role,
    /// The API token used, if any (its id and name).
    pub token: Option<(String, String)>,
}

impl Principal {
    /// How the audit log names the caller: `user:alice` or `token:ci-bot (alice)`.
    pub fn actor(&self) -> String {
        match &self.token {
            Some((_, name)) => format!("token:{name} ({})", self.username),
            None => format!("user:{}", self.username),
        }
    }
}

/// The credential a long-lived connection began with, to check again later.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token.
    ApiToken(String),
    /// A session token (from the cookie).
    Session(String),
}

/// Shortest password accepted (NIST SP 800-63B: at least 8).
pub const MIN_PASSWORD_LEN: usize = 8;

/// The auth service.
#[derive(Clone)]
pub struct Auth {
    pub(crate) db: DatabaseConnection,
    pub(crate) failures: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

impl Auth {
    /// The service over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Auth {
            db,
            failures: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        for r in [Role::Admin, Role::Operator, Role::Viewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn passwords_hash_with_a_salt_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let t = new_token("trellis_t_");
        assert_eq!(t.len(), "trellis_t_".len() + 64);
        assert_ne!(t, new_token("trellis_t_"));
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), t);
    }

    #[test]
    fn cookies_parse_and_carry_the_right_attributes() {
        assert_eq!(
            session_from_cookie_header("a=1; trellis_session=abc; b=2"),
            Some("abc")
        );
        assert_eq!(session_from_cookie_header("trellis_session="), None);
        let c = session_cookie(Some("abc"), false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(session_cookie(None, true).contains("Max-Age=0; Secure"));
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(check_username("ada.l@lab-1").is_ok());
        assert!(check_username("").is_err() && check_username("a b").is_err());
        assert!(check_password("short").is_err() && check_password("long enough").is_ok());
    }
}
