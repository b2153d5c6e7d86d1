//! GraphiQL, with its assets served by the leader itself (a leader often has no internet).

use axum::{
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};

/// GraphiQL, wired to this leader's own copies of React, GraphiQL and graphql-ws.
const GRAPHIQL_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Trellis GraphiQL</title>
<style>html, body, #graphiql { height: 100%; margin: 0; overflow: hidden; width: 100%; }</style>
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
<script src="/graphiql/assets/react.production.min.js"></script>
<script src="/graphiql/assets/react-dom.production.min.js"></script>
<script src="/graphiql/assets/graphiql.min.js"></script>
<script src="/graphiql/assets/graphql-ws.min.js"></script>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script>
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  const fetcher = GraphiQL.createFetcher({
    url: location.origin + '/graphql',
    wsClient: graphqlWs.createClient({ url: wsUrl, lazy: true }),
  });
  ReactDOM.render(
    React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
    document.getElementById('graphiql'),
  );
</script>
</body>
</html>
"#;

pub(super) async fn graphiql_page() -> Html<&'static str> {
    Html(GRAPHIQL_HTML)
}

/// The GraphiQL assets, compiled into the binary (vendored from the PyPI wheel
/// `graphene-django-graphiql-static` 0.8: GraphiQL 2.1, React 17, graphql-ws; MIT licensed).
pub(super) async fn graphiql_asset(
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.css" => (
            include_bytes!("../../assets/graphiql/graphiql.min.css"),
            "text/css",
        ),
        "graphiql.min.js" => (
            include_bytes!("../../assets/graphiql/graphiql.min.js"),
            "text/javascript",
        ),
        "react.production.min.js" => (
            include_bytes!("../../assets/graphiql/react.production.min.js"),
            "text/javascript",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
            "text/javascript",
        ),
        "graphql-ws.min.js" => (
            include_bytes!("../../assets/graphiql/graphql-ws.min.js"),
            "text/javascript",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
