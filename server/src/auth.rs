//! Users, roles, sessions and API tokens.
//!
//! - Passwords are hashed with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).
//! - Session and API tokens are 256-bit random strings; only their SHA-256 is stored, so a database
//!   leak gives no usable token (a hash of a high-entropy secret needs no slow KDF).
//! - Every request looks its token up again, so revoking a token or deleting a user takes effect
//!   at once.
//! - Login attempts are rate-limited per (username, client address) and per address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use chrono::{DateTime, Utc};
use entity::{api_token, session, user};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

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

/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "trellis_session";
/// Failed logins allowed per (username, address) within [`LOGIN_WINDOW`].
pub const MAX_FAILURES_PER_USER: usize = 5;
/// Failed logins allowed per address within [`LOGIN_WINDOW`], whatever the username.
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// The window over which failed logins are counted.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Shortest password accepted (NIST SP 800-63B: at least 8).
pub const MIN_PASSWORD_LEN: usize = 8;

/// The auth service.
#[derive(Clone)]
pub struct Auth {
    db: DatabaseConnection,
    failures: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

/// A new random token with a recognisable prefix (so secret scanners and people can spot it).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Whether a token that may be revoked or expire works now.
pub fn usable(revoked_at: Option<DateTime<Utc>>, expires_at: Option<DateTime<Utc>>) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|e| e > Utc::now())
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Checks a new username: 1–64 characters, letters, digits and `._-@`.
pub fn check_username(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "username must be 1-64 characters: letters, digits, '.', '_', '-', '@'".into(),
        ))
    }
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(ApiError::BadRequest(
            "password must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

fn role_of(m: &user::Model) -> Role {
    // An unknown stored role gets the least power rather than failing every request.
    Role::parse(&m.role).unwrap_or(Role::Viewer)
}

impl Auth {
    /// The service over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Auth {
            db,
            failures: Arc::default(),
        }
    }

    /// Whether no user exists yet (the first start shows the setup page).
    pub async fn needs_setup(&self) -> ApiResult<bool> {
        Ok(user::Entity::find().count(&self.db).await? == 0)
    }

    /// Creates a user.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> ApiResult<user::Model> {
        let username = username.trim();
        check_username(username)?;
        check_password(password)?;
        if self.find_user(username).await?.is_some() {
            return Err(ApiError::BadRequest(format!(
                "user {username:?} already exists"
            )));
        }
        let model = user::ActiveModel {
            id: Set(uuid::Uuid::new_v4().simple().to_string()),
            username: Set(username.to_owned()),
            password_hash: Set(hash_password(password)?),
            role: Set(role.as_str().to_owned()),
            created_at: Set(Utc::now()),
        };
        Ok(model.insert(&self.db).await?)
    }

    async fn find_user(&self, username: &str) -> ApiResult<Option<user::Model>> {
        let lower = username.to_lowercase();
        let all = user::Entity::find().all(&self.db).await?;
        Ok(all.into_iter().find(|u| u.username.to_lowercase() == lower))
    }

    /// Creates the first admin, only while no user exists.
    pub async fn setup(&self, username: &str, password: &str) -> ApiResult<user::Model> {
        if !self.needs_setup().await? {
            return Err(ApiError::Forbidden("setup is done: log in instead".into()));
        }
        self.create_user(username, password, Role::Admin).await
    }

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

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
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
        let Some(s) = session::Entity::find_by_id(token_hash(token))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if s.expires_at < Utc::now() {
            return Ok(None);
        }
        let Some(u) = user::Entity::find_by_id(s.user_id).one(&self.db).await? else {
            return Ok(None);
        };
        Ok(Some(Principal {
            role: role_of(&u),
            user_id: u.id,
            username: u.username,
            token: None,
        }))
    }

    /// The caller behind an API token, if it is valid (not revoked, not expired, creator exists).
    /// The token's role is capped by its creator's current role. Records the use.
    pub async fn from_api_token(&self, token: &str) -> ApiResult<Option<Principal>> {
        let principal = self.api_token_principal(token).await?;
        if let Some((id, _)) = principal.as_ref().and_then(|p| p.token.as_ref()) {
            api_token::Entity::update_many()
                .col_expr(
                    api_token::Column::LastUsedAt,
                    sea_orm::sea_query::Expr::value(Some(Utc::now())),
                )
                .filter(api_token::Column::Id.eq(id.clone()))
                .exec(&self.db)
                .await?;
        }
        Ok(principal)
    }

    /// Like [`Auth::from_api_token`], without recording the use.
    async fn api_token_principal(&self, token: &str) -> ApiResult<Option<Principal>> {
        let Some(t) = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(token_hash(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if !usable(t.revoked_at, t.expires_at) {
            return Ok(None);
        }
        let Some(u) = user::Entity::find_by_id(t.user_id.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let role = Role::parse(&t.role)
            .unwrap_or(Role::Viewer)
            .min(role_of(&u));
        Ok(Some(Principal {
            user_id: u.id,
            username: u.username,
            role,
            token: Some((t.id, t.name)),
        }))
    }

    /// Whether a credential still works with the same role it began with (a database error
    /// counts as "yes": an outage should not drop every subscriber, and new requests are checked
    /// anyway).
    pub async fn still_allows(&self, credential: &Credential, role: Role) -> bool {
        let current = match credential {
            Credential::Session(t) => self.from_session(t).await,
            Credential::ApiToken(t) => self.api_token_principal(t).await,
        };
        match current {
            Ok(Some(p)) => p.role == role,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Creates an API token for `owner`; returns it and the plaintext token (shown once).
    pub async fn create_token(
        &self,
        owner: &Principal,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<(api_token::Model, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ApiError::BadRequest(
                "token name must be 1-64 characters".into(),
            ));
        }
        if role > owner.role {
            return Err(ApiError::Forbidden(format!(
                "a {} cannot create a token with role {}",
                owner.role.as_str(),
                role.as_str()
            )));
        }
        if owner.token.is_some() {
            return Err(ApiError::Forbidden(
                "API tokens cannot create API tokens; log in".into(),
            ));
        }
        let token = new_token("trellis_t_");
        let model = api_token::ActiveModel {
            id: Set(uuid::Uuid::new_v4().simple().to_string()),
            name: Set(name.to_owned()),
            user_id: Set(owner.user_id.clone()),
            role: Set(role.as_str().to_owned()),
            token_hash: Set(token_hash(&token)),
            prefix: Set(token.chars().take(14).collect()),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            last_used_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok((model, token))
    }

    /// Tokens `viewer` may see: their own, or every token for an admin.
    pub async fn list_tokens(&self, viewer: &Principal) -> ApiResult<Vec<api_token::Model>> {
        let mut q = api_token::Entity::find().order_by_desc(api_token::Column::CreatedAt);
        if viewer.role != Role::Admin {
            q = q.filter(api_token::Column::UserId.eq(viewer.user_id.clone()));
        }
        Ok(q.all(&self.db).await?)
    }

    /// Revokes a token: its owner or an admin may.
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> ApiResult<api_token::Model> {
        let t = api_token::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .filter(|t| by.role == Role::Admin || t.user_id == by.user_id)
            .ok_or_else(|| ApiError::NotFound(format!("token {id:?}")))?;
        if t.revoked_at.is_some() {
            return Ok(t);
        }
        let mut m = t.into_active_model();
        m.revoked_at = Set(Some(Utc::now()));
        Ok(m.update(&self.db).await?)
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> ApiResult<Vec<user::Model>> {
        Ok(user::Entity::find()
            .order_by_asc(user::Column::Username)
            .all(&self.db)
            .await?)
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> ApiResult<Option<user::Model>> {
        Ok(user::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Changes a user's role; the last admin cannot stop being one.
    pub async fn set_role(&self, id: &str, role: Role) -> ApiResult<user::Model> {
        let u = self
            .user(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {id:?}")))?;
        if role_of(&u) == Role::Admin && role != Role::Admin {
            self.ensure_another_admin(&u.id).await?;
        }
        let mut m = u.into_active_model();
        m.role = Set(role.as_str().to_owned());
        Ok(m.update(&self.db).await?)
    }

    async fn ensure_another_admin(&self, except: &str) -> ApiResult<()> {
        let admins = user::Entity::find()
            .filter(user::Column::Role.eq(Role::Admin.as_str()))
            .filter(user::Column::Id.ne(except.to_owned()))
            .count(&self.db)
            .await?;
        if admins == 0 {
            return Err(ApiError::BadRequest(
                "the last admin cannot be removed or demoted".into(),
            ));
        }
        Ok(())
    }

    /// Deletes a user with their sessions and tokens.
    pub async fn delete_user(&self, id: &str) -> ApiResult<user::Model> {
        let u = self
            .user(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {id:?}")))?;
        if role_of(&u) == Role::Admin {
            self.ensure_another_admin(&u.id).await?;
        }
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(u.id.clone()))
            .exec(&self.db)
            .await?;
        let now = Utc::now();
        for t in api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(u.id.clone()))
            .all(&self.db)
            .await?
        {
            if t.revoked_at.is_none() {
                let mut m = t.into_active_model();
                m.revoked_at = Set(Some(now));
                m.update(&self.db).await?;
            }
        }
        user::Entity::delete_by_id(u.id.clone())
            .exec(&self.db)
            .await?;
        Ok(u)
    }

    /// Changes the caller's own password after checking the current one; ends their other sessions.
    pub async fn change_password(
        &self,
        who: &Principal,
        current: &str,
        new: &str,
    ) -> ApiResult<()> {
        let u = self
            .user(&who.user_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("user".into()))?;
        if !verify_password(current, &u.password_hash) {
            return Err(ApiError::Unauthenticated(
                "the current password is wrong".into(),
            ));
        }
        check_password(new)?;
        let id = u.id.clone();
        let mut m = u.into_active_model();
        m.password_hash = Set(hash_password(new)?);
        m.update(&self.db).await?;
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Refuses when `key` has `max` failures within the window; drops older ones.
fn check_rate(
    f: &mut HashMap<String, Vec<Instant>>,
    key: &str,
    max: usize,
    now: Instant,
) -> ApiResult<()> {
    let Some(list) = f.get_mut(key) else {
        return Ok(());
    };
    list.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
    if list.len() >= max {
        let oldest = list.first().copied().unwrap_or(now);
        let wait = LOGIN_WINDOW
            .saturating_sub(now.duration_since(oldest))
            .as_secs()
            + 1;
        return Err(ApiError::RateLimited(format!(
            "too many failed logins; try again in {wait} s"
        )));
    }
    Ok(())
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
