//! Registry credentials: one user name and secret per registry host, kept in the leader's
//! database, used by nodes' engines to pull. The secret is write-only: no query returns it,
//! the audit log records only the host and user, and it is never logged (the model's `Debug`
//! hides it).

use bollard::auth::DockerCredentials;
use entity::registry_credential as credential;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, Set, sea_query::OnConflict};

use crate::error::{ApiError, ApiResult};

/// Docker Hub, where an image without a registry host comes from.
pub const DOCKER_HUB: &str = "docker.io";

/// The registry host an image reference names: its first part when that has a `.` or a `:` or
/// is `localhost` (`registry.local:5000/cam:1`), else Docker Hub (`busybox`, `library/x`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => DOCKER_HUB,
    }
}

/// Checks a registry host as typed: `host[:port]`, no scheme, no path.
pub fn check_server(server: &str) -> Result<(), String> {
    let ok = !server.is_empty()
        && server.len() <= 253
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "server {server:?}: a registry host, as in an image's name (registry.local:5000), no scheme or path"
        ))
    }
}

/// Sets (or replaces) the credentials of `server`.
pub async fn set(
    db: &DatabaseConnection,
    server: &str,
    username: &str,
    secret: &str,
    by: &str,
) -> ApiResult<credential::Model> {
    check_server(server).map_err(ApiError::BadRequest)?;
    if username.is_empty() || username.len() > 256 {
        return Err(ApiError::BadRequest("username: 1 to 256 characters".into()));
    }
    if secret.is_empty() || secret.len() > 4096 {
        return Err(ApiError::BadRequest(
            "password: 1 to 4096 characters".into(),
        ));
    }
    let row = credential::ActiveModel {
        server: Set(server.to_owned()),
        username: Set(username.to_owned()),
        secret: Set(secret.to_owned()),
        updated_by: Set(by.to_owned()),
        updated_ms: Set(chrono::Utc::now().timestamp_millis()),
    };
    credential::Entity::insert(row)
        .on_conflict(
            OnConflict::column(credential::Column::Server)
                .update_columns([
                    credential::Column::Username,
                    credential::Column::Secret,
                    credential::Column::UpdatedBy,
                    credential::Column::UpdatedMs,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    credential::Entity::find_by_id(server)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::Internal("a registry credential vanished".into()))
}

/// Removes the credentials of `server`; whether there were any.
pub async fn remove(db: &DatabaseConnection, server: &str) -> ApiResult<bool> {
    let r = credential::Entity::delete_by_id(server).exec(db).await?;
    Ok(r.rows_affected > 0)
}

/// Every registry with credentials, by host.
pub async fn list(db: &DatabaseConnection) -> ApiResult<Vec<credential::Model>> {
    Ok(credential::Entity::find()
        .order_by_asc(credential::Column::Server)
        .all(db)
        .await?)
}

/// The credentials to pull `image` with, if its registry has some.
pub async fn for_image(
    db: &DatabaseConnection,
    image: &str,
) -> ApiResult<Option<DockerCredentials>> {
    let server = registry_of(image);
    Ok(credential::Entity::find_by_id(server)
        .one(db)
        .await?
        .map(|c| DockerCredentials {
            username: Some(c.username),
            password: Some(c.secret),
            serveraddress: Some(c.server),
            ..Default::default()
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_of_an_image_is_its_host_or_docker_hub() {
        assert_eq!(
            registry_of("registry.local:5000/cam:1.3"),
            "registry.local:5000"
        );
        assert_eq!(
            registry_of("127.0.0.1:5000/a/b@sha256:00"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("ghcr.io/org/app"), "ghcr.io");
        assert_eq!(registry_of("busybox"), DOCKER_HUB);
        assert_eq!(registry_of("library/busybox:1"), DOCKER_HUB);
        assert!(check_server("registry.local:5000").is_ok());
        assert!(check_server("https://registry.local").is_err());
        assert!(check_server("").is_err());
    }
}
