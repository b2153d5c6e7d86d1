//! A node's images and image transfers: what its engine holds (installed apps among them), the
//! transfers from the leader with their progress, sideload and prune. Answers are read from
//! the JSON (see `api::deployments`).

use super::{DateTime, operation};

operation!(
    /// The images on a node's engine.
    NodeImages,
    "src/operations/images.graphql"
);
operation!(
    /// A node's free disk and its latest transfers.
    NodeTransfers,
    "src/operations/images.graphql"
);
operation!(
    /// Send an image from the leader's engine to a node's.
    SideloadImage,
    "src/operations/images.graphql"
);
operation!(
    /// Remove the images no deployment needs from a node.
    PruneImages,
    "src/operations/images.graphql"
);
operation!(
    /// Every change to a node's transfers.
    ImageTransferEvents,
    "src/operations/images.graphql"
);
