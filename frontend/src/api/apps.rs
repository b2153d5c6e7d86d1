//! Apps: the list with each app's versions and deployment, build and deploy, removal, and a
//! build's live log. Answers are read from the JSON (see `api::deployments`); bundles are
//! uploaded by `pages::apps` with an `XMLHttpRequest`, for its upload progress.

use super::{DateTime, operation};

operation!(
    /// Every app with its versions and its deployment.
    Apps,
    "src/operations/apps.graphql"
);
operation!(
    /// Build a version on the leader's engine.
    BuildApp,
    "src/operations/apps.graphql"
);
operation!(
    /// Run a version as the app's deployment (built first when needed).
    DeployApp,
    "src/operations/apps.graphql"
);
operation!(
    /// Remove an app with its deployment, versions and images.
    RemoveApp,
    "src/operations/apps.graphql"
);
operation!(
    /// A version's build log: the lines so far, then each new one, then its end.
    AppBuildLog,
    "src/operations/apps.graphql"
);
