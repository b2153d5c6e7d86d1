//! A live readings frame on its way to one subscriber, rendered once for all of them.
//!
//! At 1 000 readings/s a chunk of the feed goes to every live chart at once, and most charts
//! take all of it with the same selection: the web app's, or a script's copied from the docs.
//! async-graphql resolves a result for each subscriber, then the transport serializes each:
//! the same JSON made a hundred times over. A frame that is a whole chunk (every reading of one
//! chunk of the feed, nothing left out) is resolved once per selection, its JSON kept in
//! [`RenderedFrames`] beside the chunk, and handed on as a [`Value::Binary`] that the websocket
//! transport (`http::ws_protocol`) writes as it is. Any other frame, and any selection with
//! named fragments or directives other than `@skip` and `@include` (which async-graphql applies
//! first), is resolved as usual.

use std::{
    borrow::Cow,
    collections::VecDeque,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::{
    ContextSelectionSet, OutputType, Positioned, ServerResult, Value,
    parser::types::{Field, Selection, SelectionSet},
    registry::Registry,
};

use super::ReadingFrame;

/// The readings of one chunk of the live feed, as the ingester sent them.
pub type Chunk = Arc<Vec<entity::reading::Model>>;

/// One subscriber's frame: the GraphQL type `ReadingFrame`.
pub struct LiveFrame {
    /// What it holds.
    pub frame: ReadingFrame,
    /// The chunk, when the frame is the whole of it (and nothing was skipped, no resync).
    pub whole: Option<Chunk>,
    /// The subscription's selection as a key, made at its first frame (`None` inside: it cannot
    /// be shared).
    pub selection: Arc<OnceLock<Option<String>>>,
}

/// How many renderings are kept: a chunk's for each distinct selection, the newest chunks'.
const KEPT: usize = 16;

/// Frames rendered lately, by chunk and selection (schema data). Holding the chunk keeps its
/// address from being reused by another while its entry lives.
#[derive(Default)]
pub struct RenderedFrames(Mutex<VecDeque<(Chunk, String, bytes::Bytes)>>);

impl RenderedFrames {
    fn get(&self, chunk: &Chunk, key: &str) -> Option<bytes::Bytes> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(c, k, _)| Arc::ptr_eq(c, chunk) && k == key)
            .map(|(_, _, b)| b.clone())
    }

    fn put(&self, chunk: &Chunk, key: &str, rendered: bytes::Bytes) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept
            .iter()
            .any(|(c, k, _)| Arc::ptr_eq(c, chunk) && k == key)
        {
            return; // Another subscriber rendered it meanwhile.
        }
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((chunk.clone(), key.to_owned(), rendered));
    }
}

/// A selection's text without positions, or `None` when it has directives, arguments or named
/// fragments: two selections with the same key give the same JSON for the same frame. (`@skip`
/// and `@include` are gone by now: async-graphql applies them, with the request's variables,
/// before anything runs.)
fn selection_key(set: &Positioned<SelectionSet>) -> Option<String> {
    fn write(set: &SelectionSet, out: &mut String) -> bool {
        out.push('{');
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    if !f.directives.is_empty() || !f.arguments.is_empty() {
                        return false;
                    }
                    if let Some(alias) = &f.alias {
                        out.push_str(alias.node.as_str());
                        out.push(':');
                    }
                    out.push_str(f.name.node.as_str());
                    if !f.selection_set.node.items.is_empty() && !write(&f.selection_set.node, out)
                    {
                        return false;
                    }
                }
                Selection::InlineFragment(i) => {
                    let i = &i.node;
                    if !i.directives.is_empty() {
                        return false;
                    }
                    out.push_str("...");
                    if let Some(on) = &i.type_condition {
                        out.push_str(on.node.on.node.as_str());
                    }
                    if !write(&i.selection_set.node, out) {
                        return false;
                    }
                }
                Selection::FragmentSpread(_) => return false,
            }
            out.push(' ');
        }
        out.push('}');
        true
    }
    let mut out = String::new();
    write(&set.node, &mut out).then_some(out)
}

impl OutputType for LiveFrame {
    fn type_name() -> Cow<'static, str> {
        <ReadingFrame as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <ReadingFrame as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <ReadingFrame as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let shared = self.whole.as_ref().and_then(|chunk| {
            let key = self
                .selection
                .get_or_init(|| selection_key(&field.node.selection_set));
            Some((chunk, key.as_deref()?, ctx.data_opt::<RenderedFrames>()?))
        });
        let Some((chunk, key, rendered)) = shared else {
            return OutputType::resolve(&self.frame, ctx, field).await;
        };
        if let Some(json) = rendered.get(chunk, key) {
            return Ok(Value::Binary(json));
        }
        let value = OutputType::resolve(&self.frame, ctx, field).await?;
        match serde_json::to_vec(&value) {
            Ok(json) => {
                let json = bytes::Bytes::from(json);
                rendered.put(chunk, key, json.clone());
                Ok(Value::Binary(json))
            }
            Err(_) => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, Object, Schema, Subscription};
    use futures::StreamExt;

    use super::*;
    use crate::graphql::types::LiveRow;

    struct Query;

    #[Object]
    impl Query {
        async fn unused(&self) -> bool {
            true
        }
    }

    /// Each subscription gets one frame of the same chunk: the whole of it, or not.
    struct Frames(Chunk);

    #[Subscription]
    impl Frames {
        async fn frames(&self, whole: bool) -> impl futures::Stream<Item = LiveFrame> {
            let chunk = self.0.clone();
            let frame = ReadingFrame {
                rows: (0..chunk.len())
                    .map(|i| LiveRow(chunk.clone(), i))
                    .collect(),
                skipped: 0,
                resync: false,
            };
            futures::stream::once(async move {
                LiveFrame {
                    frame,
                    whole: whole.then_some(chunk),
                    selection: Arc::default(),
                }
            })
        }
    }

    #[tokio::test]
    async fn subscribers_with_one_selection_share_one_rendering_of_a_whole_chunk() {
        let chunk: Chunk = Arc::new(
            (0..3)
                .map(|i| entity::reading::Model {
                    id: i,
                    node_id: "n".into(),
                    job: "j".into(),
                    metric: format!("m{}", i % 2),
                    unit: None,
                    time_ms: 1_800_000_000_000 + i,
                    node_time_ms: 1_800_000_000_000 + i,
                    value: i as f64 / 2.0,
                    experiment_id: None,
                })
                .collect(),
        );
        let schema = Schema::build(Query, EmptyMutation, Frames(chunk))
            .data(RenderedFrames::default())
            .finish();
        let first = async |query: &str| {
            let r = schema.execute_stream(query).next().await.expect("a frame");
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            let Value::Object(fields) = r.data else {
                panic!("{:?}", r.data)
            };
            fields.into_values().next().expect("the field")
        };
        let rendered = |v: &Value| match v {
            Value::Binary(b) => Some(b.clone()),
            _ => None,
        };
        let json = |v: &Value| match v {
            Value::Binary(b) => serde_json::from_slice::<serde_json::Value>(b).expect("json"),
            v => v.clone().into_json().expect("json"),
        };

        let a = first("subscription { frames(whole: true) { series { metric values } skipped } }")
            .await;
        let b = first(
            "subscription {\n f: frames(whole: true) {\n series { metric values }\n skipped\n }\n}",
        )
        .await;
        let (Some(ra), Some(rb)) = (rendered(&a), rendered(&b)) else {
            panic!("{a:?} {b:?}")
        };
        assert_eq!(ra.as_ptr(), rb.as_ptr(), "rendered once, shared");
        assert_eq!(
            json(&a),
            serde_json::json!({"series": [
                {"metric": "m0", "values": [0.0, 1.0]},
                {"metric": "m1", "values": [0.5]}
            ], "skipped": 0})
        );
        // Another selection: its own rendering.
        let c = first("subscription { frames(whole: true) { skipped } }").await;
        assert_eq!(json(&c), serde_json::json!({"skipped": 0}));
        // @skip and @include are applied before (async-graphql takes them out of the selection):
        // what is left is what the key says.
        let d = first(
            "subscription { frames(whole: true) { series @skip(if: true) { metric } skipped } }",
        )
        .await;
        assert_eq!(json(&d), serde_json::json!({"skipped": 0}));
        // Not a whole chunk: resolved as usual, the same JSON.
        let e = first("subscription { frames(whole: false) { series { metric values } skipped } }")
            .await;
        assert!(rendered(&e).is_none(), "{e:?}");
        assert_eq!(json(&e), json(&a));
    }

    fn key(query: &str) -> Option<String> {
        let doc = async_graphql::parser::parse_query(query).expect("a query");
        let (_, op) = doc.operations.iter().next().expect("an operation");
        let Selection::Field(f) = &op.node.selection_set.node.items[0].node else {
            panic!("a field")
        };
        selection_key(&f.node.selection_set)
    }

    #[test]
    fn selections_that_mean_the_same_share_a_key_and_others_do_not() {
        let a = key(
            "subscription { liveReadings(nodeId: \"a\") { series { values timesMs } skipped } }",
        );
        let b = key(
            "subscription {\n  liveReadings(nodeId: \"b\") {\n    series {\n      values\n      timesMs\n    }\n    skipped\n  }\n}",
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(
            a,
            key(
                "subscription { liveReadings(nodeId: \"a\") { series { v: values timesMs } skipped } }"
            )
        );
        assert_ne!(
            a,
            key(
                "subscription { liveReadings(nodeId: \"a\") { series { timesMs values } skipped } }"
            )
        );
        assert_eq!(
            key(
                "subscription { liveReadings(nodeId: \"a\") { series @include(if: $x) { values } } }"
            ),
            None
        );
        assert_eq!(
            key(
                "subscription { liveReadings(nodeId: \"a\") { ...F } } fragment F on ReadingFrame { skipped }"
            ),
            None
        );
        assert!(
            key("subscription { liveReadings(nodeId: \"a\") { ... on ReadingFrame { skipped } } }")
                .is_some()
        );
    }
}
