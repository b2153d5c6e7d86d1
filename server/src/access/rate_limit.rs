//! Login rate limits: failures counted per (username, address) and per address over a window.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::Auth;
use crate::error::{ApiError, ApiResult};

/// Failed logins allowed per (username, address) within [`LOGIN_WINDOW`].
pub const MAX_FAILURES_PER_USER: usize = 5;
/// Failed logins allowed per address within [`LOGIN_WINDOW`], whatever the username.
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// The window over which failed logins are counted.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

impl Auth {
    pub(crate) fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Refuses when `key` has `max` failures within the window; drops older ones.
pub(crate) fn check_rate(
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
