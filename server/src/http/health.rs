//! `/readyz`: whether the database answers and the bridge holds a broker connection.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::HttpState;

/// Ready when the database answers and the bridge holds a broker connection.
pub(super) async fn readyz(State(s): State<HttpState>) -> Response {
    let db_ok = tokio::time::timeout(Duration::from_secs(2), s.app.nodes.db().ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let broker_ok = s.app.bridge.is_connected();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if db_ok && broker_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"database": word(db_ok), "broker": word(broker_ok)})),
    )
        .into_response()
}
