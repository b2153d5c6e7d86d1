//! Browser sessions: login (rate-limited, Argon2 off the async workers), the session cookie, and
//! resolving a cookie to its user.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::{session, user};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::{
    Auth, LOGIN_WINDOW, MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USER, Principal, check_rate,
    hash_password, new_token, role_of, token_hash, verify_password,
};
use crate::{
    error::{ApiError, ApiResult},
    infra::db::by_key,
};

/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "trellis_session";

impl Auth {
    /// Checks a password, counting failures; returns the user on success.
    pub async fn check_login(
        &self,
        username: &str,
        password: &str,
        addr: Option<IpAddr>,
    ) -> ApiResult<user::Model> {
        let wrong = || ApiError::Unauthenticated("wrong username or password".into());
        // No real username is longer; refusing here keeps junk out of the failure table.
        if username.chars().count() > 64 || password.len() > 1024 {
            return Err(wrong());
        }
        let addr_key = format!("addr:{}", addr.map(|a| a.to_string()).unwrap_or_default());
        let user_key = format!("user:{}|{addr_key}", username.to_lowercase());
        // Count the attempt as failed before checking it (and forgive it on success), so many
        // attempts in parallel cannot all pass the limit while their hashes are computed.
        {
            let mut f = self.lock_failures();
            let now = Instant::now();
            check_rate(&mut f, &user_key, MAX_FAILURES_PER_USER, now)?;
            check_rate(&mut f, &addr_key, MAX_FAILURES_PER_ADDRESS, now)?;
            f.entry(user_key.clone()).or_default().push(now);
            f.entry(addr_key.clone()).or_default().push(now);
            // Housekeeping: forget keys whose failures are all older than the window.
            if f.len() > 10_000 {
                f.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < LOGIN_WINDOW));
            }
        }
        let found = self.find_user(username).await?;
        let hash = found.as_ref().map(|u| u.password_hash.clone());
        let candidate = password.to_owned();
        // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => verify_password(&candidate, &h),
            None => {
                // Spend the same time as a real check, so timing does not reveal which names exist.
                let _ = hash_password(&candidate);
                false
            }
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password check failed: {e}")))?;
        match (ok, found) {
            (true, Some(u)) => {
                let mut f = self.lock_failures();
                f.remove(&user_key);
                if let Some(list) = f.get_mut(&addr_key) {
                    list.pop();
                }
                Ok(u)
            }
            _ => Err(wrong()),
        }
    }

    /// Starts a session for `user`; returns the session token for the cookie.
    pub async fn start_session(&self, user: &user::Model) -> ApiResult<String> {
        let token = new_token("trellis_s_");
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(SESSION_TTL).unwrap_or(chrono::Duration::days(7));
        session::ActiveModel {
            token_hash: Set(token_hash(&token)),
            user_id: Set(user.id.clone()),
            created_at: Set(now),
            expires_at: Set(now + ttl),
        }
        .insert(&self.db)
        .await?;
        // Housekeeping: expired sessions are of no use to anyone.
        session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        Ok(token)
    }

    /// Ends a session.
    pub async fn end_session(&self, token: &str) -> ApiResult<()> {
        session::Entity::delete_by_id(token_hash(token))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The caller behind a session token, if it is live.
    pub async fn from_session(&self, token: &str) -> ApiResult<Option<Principal>> {
        // Every request with a cookie and every open socket every 2 s: `by_key`, not `one`.
        let Some(s) = by_key(session::Entity::find_by_id(token_hash(token)), &self.db).await?
        else {
            return Ok(None);
        };
        if s.expires_at < Utc::now() {
            return Ok(None);
        }
        let Some(u) = by_key(user::Entity::find_by_id(s.user_id), &self.db).await? else {
            return Ok(None);
        };
        Ok(Some(Principal {
            role: role_of(&u)?,
            user_id: u.id,
            username: u.username,
            token: None,
        }))
    }
}

/// The value of the `trellis_session` cookie in a `Cookie` header, if present.
pub fn session_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == SESSION_COOKIE && !v.is_empty()).then_some(v)
    })
}

/// A `Set-Cookie` value for a session (`None` clears it). `secure` adds `Secure` (HTTPS only).
pub fn session_cookie(token: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(t) => format!(
            "{SESSION_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}
