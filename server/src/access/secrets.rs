//! Secrets: random tokens (only their SHA-256 is stored), Argon2id password hashes, and the one
//! rule for whether a revocable, expiring token works.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// A new random token with a recognisable prefix (so secret scanners and people can spot it).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", trellis_proto::hex(&bytes))
}

/// Whether a token that may be revoked or expire works now.
pub fn usable(revoked_at: Option<DateTime<Utc>>, expires_at: Option<DateTime<Utc>>) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|e| e > Utc::now())
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    trellis_proto::hex(&Sha256::digest(token.as_bytes()))
}

/// Longest API token lifetime accepted, days.
pub const MAX_API_TOKEN_DAYS: i32 = 3650;

/// The expiry time for "expires in `days` days" (none when `None`), refusing values outside
/// 1..=`max`.
pub fn expiry(days: Option<i32>, max: i32) -> ApiResult<Option<DateTime<Utc>>> {
    match days {
        None => Ok(None),
        Some(d) if (1..=max).contains(&d) => {
            Ok(Some(Utc::now() + chrono::Duration::days(i64::from(d))))
        }
        Some(_) => Err(ApiError::BadRequest(format!(
            "expiresInDays must be 1-{max}"
        ))),
    }
}

/// Longest name of an API token or join token, in characters.
pub const MAX_TOKEN_NAME_LEN: usize = 64;

/// The trimmed name of a new token (`what` says which kind, for the error), 1 to
/// [`MAX_TOKEN_NAME_LEN`] characters.
pub fn token_name<'a>(what: &str, name: &'a str) -> ApiResult<&'a str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "{what} name must be 1-{MAX_TOKEN_NAME_LEN} characters"
        )));
    }
    Ok(name)
}

/// [`hash_password`] on a blocking thread: Argon2 takes tens of milliseconds of CPU and 19 MiB,
/// which must not stall the async workers that serve every other request.
pub(crate) async fn hash_password_off_worker(password: &str) -> ApiResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))?
}

/// [`verify_password`] on a blocking thread, for the same reason.
pub(crate) async fn verify_password_off_worker(password: &str, hash: &str) -> ApiResult<bool> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(format!("password check failed: {e}")))
}

pub(crate) fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}
