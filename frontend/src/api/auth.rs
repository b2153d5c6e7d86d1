//! Who is using the app: first-start setup, logging in and out. The `Session` query generates the
//! shared [`Role`] enum.

use super::operation;

operation!(
    /// The first-start status and the caller.
    Session,
    "src/operations/auth.graphql"
);
operation!(
    /// Create the first admin.
    Setup,
    "src/operations/auth.graphql",
    extern_enums("Role")
);
operation!(
    /// Log in.
    Login,
    "src/operations/auth.graphql",
    extern_enums("Role")
);
operation!(
    /// Log out.
    Logout,
    "src/operations/auth.graphql"
);

pub use session::Role;

impl Role {
    /// The roles a form offers, lowest first.
    pub const ALL: [Role; 3] = [Role::VIEWER, Role::OPERATOR, Role::ADMIN];

    /// The role as people read it ("viewer").
    pub fn word(&self) -> &str {
        match self {
            Role::VIEWER => "viewer",
            Role::OPERATOR => "operator",
            Role::ADMIN => "admin",
            Role::Other(other) => other,
        }
    }

    /// The role a form's `<select>` chose, by [`Role::word`]; anything else is the lowest role.
    pub fn from_word(word: &str) -> Role {
        Role::ALL
            .into_iter()
            .find(|r| r.word() == word)
            .unwrap_or(Role::VIEWER)
    }

    /// Whether the role may change things (operator and above).
    pub fn can_operate(&self) -> bool {
        matches!(self, Role::OPERATOR | Role::ADMIN)
    }
}
