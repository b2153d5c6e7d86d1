//! Users: creating them (the first admin at setup), roles, password changes and deletion, with
//! the rule that the last admin cannot be removed or demoted.

use chrono::Utc;
use entity::{api_token, session, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder,
};

use super::{
    Auth, MIN_PASSWORD_LEN, Principal, Role, hash_password_off_worker, verify_password_off_worker,
};
use crate::error::{ApiError, ApiResult};

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

pub(crate) fn role_of(m: &user::Model) -> ApiResult<Role> {
    // An unknown stored role gets the least power rather than failing every request.
    Role::stored(&m.role)
}

impl Auth {
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
            password_hash: Set(hash_password_off_worker(password).await?),
            role: Set(role.as_str().to_owned()),
            created_at: Set(Utc::now()),
        };
        Ok(model.insert(&self.db).await?)
    }

    pub(crate) async fn find_user(&self, username: &str) -> ApiResult<Option<user::Model>> {
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
        if Role::parse(&u.role) == Some(Role::Admin) && role != Role::Admin {
            self.ensure_another_admin(&u.id).await?;
        }
        let mut m = u.into_active_model();
        m.role = Set(role.as_str().to_owned());
        Ok(m.update(&self.db).await?)
    }

    pub(crate) async fn ensure_another_admin(&self, except: &str) -> ApiResult<()> {
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
        if Role::parse(&u.role) == Some(Role::Admin) {
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
        if !verify_password_off_worker(current, &u.password_hash).await? {
            return Err(ApiError::Unauthenticated(
                "the current password is wrong".into(),
            ));
        }
        check_password(new)?;
        let id = u.id.clone();
        let mut m = u.into_active_model();
        m.password_hash = Set(hash_password_off_worker(new).await?);
        m.update(&self.db).await?;
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
