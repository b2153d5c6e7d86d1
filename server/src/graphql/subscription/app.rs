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
        let (first, so_far) = state.apps.log_so_far(&row.id).await?;
        let building = row.build_state == state::BUILDING;
        let count = first + so_far.len();
        let number = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
        let first_items: Vec<BuildLogLine> = so_far
            .into_iter()
            .enumerate()
            .map(|(i, line)| BuildLogLine {
                line,
                seq: number(first + i),
                state: BuildState::Building,
            })
            .chain((!building).then(|| BuildLogLine {
                line: String::new(),
                seq: number(count),
                state: BuildState::of(&row.build_state),
            }))
            .collect();
        let id = row.id.clone();
        let apps = state.apps.clone();
        let live = events
            .filter_map(move |e| {
                let id = id.clone();
                let apps = apps.clone();
                async move {
                    match e {
                        Some(e) if e.version_id == id => match e.line {
                            Some(_) if e.seq < count => None,
                            Some(line) => Some(BuildLogLine {
                                line,
                                seq: number(e.seq),
                                state: BuildState::Building,
                            }),
                            // The build's start says nothing new here; its end does.
                            None if e.state == state::BUILDING => None,
                            None => Some(BuildLogLine {
                                line: String::new(),
                                seq: number(e.seq),
                                state: BuildState::of(&e.state),
                            }),
                        },
                        Some(_) => None,
                        // Fell behind: say so; if the build ended meanwhile, end here.
                        None => {
                            let now = apps.version_by_id(&id).await.ok().flatten()?;
                            Some(BuildLogLine {
                                line: if now.build_state == state::BUILDING {
                                    "[... lines were missed here: the stored log has them all]"
                                        .into()
                                } else {
                                    String::new()
                                },
                                seq: -1,
                                state: BuildState::of(&now.build_state),
                            })
                        }
                    }
                }
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
        Ok(futures::stream::iter(first_items).chain(tail))
    }
}
