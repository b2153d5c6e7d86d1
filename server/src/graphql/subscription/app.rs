//! App subscriptions: a build's log, the lines so far and then each new one as it comes, and
//! the build's end.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        stream::resyncing,
        types::{BuildLogLine, BuildState},
    },
    images::apps::state,
};

/// App subscriptions.
#[derive(Default)]
pub struct AppSubscription;

#[Subscription]
impl AppSubscription {
    /// The build log of one version: every line so far, then each new line, then a last item
    /// with the build's end state (`BUILT` or `FAILED`, an empty line). A version not building
    /// gives its stored log and its state, and ends.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn app_build_log(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: String,
    ) -> Result<impl Stream<Item = BuildLogLine>> {
        let state = ctx.data::<AppState>()?;
        // Subscribed before the snapshot: no line falls between the two (duplicates are
        // skipped by number).
        let events = resyncing(state.apps.subscribe(), Some, || None);
        let row = state.apps.version(&name, &version).await?;
        let so_far = state.apps.log_so_far(&row.id).await?;
        let building = row.build_state == state::BUILDING;
        let count = so_far.len();
        let first: Vec<BuildLogLine> = so_far
            .into_iter()
            .enumerate()
            .map(|(i, line)| BuildLogLine {
                line,
                seq: i32::try_from(i).unwrap_or(i32::MAX),
                state: BuildState::Building,
            })
            .chain((!building).then(|| BuildLogLine {
                line: String::new(),
                seq: i32::try_from(count).unwrap_or(i32::MAX),
                state: BuildState::of(&row.build_state),
            }))
            .collect();
        let id = row.id.clone();
        let live = events
            .filter_map(move |e| {
                let item = match e {
                    Some(e) if e.version_id == id => {
                        if e.line.is_some() && e.seq < count {
                            None
                        } else {
                            Some(BuildLogLine {
                                line: e.line.unwrap_or_default(),
                                seq: i32::try_from(e.seq).unwrap_or(i32::MAX),
                                state: BuildState::of(&e.state),
                            })
                        }
                    }
                    Some(_) => None,
                    // Fell behind: the stored log, when it ends, has what was missed.
                    None => None,
                };
                futures::future::ready(item)
            })
            .take_while(|l| {
                futures::future::ready(
                    !(l.line.is_empty()
                        && matches!(l.state, BuildState::Built | BuildState::Failed)),
                )
            });
        let end_state = {
            let apps = state.apps.clone();
            let name = name.clone();
            let version = version.clone();
            futures::stream::once(async move {
                let v = apps.version(&name, &version).await.ok();
                BuildLogLine {
                    line: String::new(),
                    seq: -1,
                    state: v
                        .map(|v| BuildState::of(&v.build_state))
                        .unwrap_or(BuildState::Failed),
                }
            })
        };
        let tail = if building {
            live.chain(end_state).boxed()
        } else {
            futures::stream::empty().boxed()
        };
        Ok(futures::stream::iter(first).chain(tail))
    }
}
