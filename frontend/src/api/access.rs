//! Access: API tokens and, for admins, users. Every role here is the shared [`Role`].

use super::{DateTime, Role, operation};

operation!(
    /// The caller's API tokens.
    ApiTokens,
    "src/operations/access.graphql",
    extern_enums("Role")
);
operation!(
    /// Every user (admins).
    Users,
    "src/operations/access.graphql",
    extern_enums("Role")
);
operation!(
    /// Create an API token; the secret is in the answer only.
    CreateApiToken,
    "src/operations/access.graphql",
    extern_enums("Role")
);
operation!(
    /// Revoke an API token.
    RevokeApiToken,
    "src/operations/access.graphql"
);
operation!(
    /// Create a user (admins).
    CreateUser,
    "src/operations/access.graphql",
    extern_enums("Role")
);
operation!(
    /// Delete a user (admins).
    DeleteUser,
    "src/operations/access.graphql"
);

/// One API token as the list shows it.
pub type ApiToken = api_tokens::ApiTokensApiTokens;
/// One user as the list shows it.
pub type User = users::UsersUsers;
