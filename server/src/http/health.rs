//! `/readyz`: whether the database answers (and its writes work) and the bridge holds a broker
//! connection; when the database does not, `databaseReason` says why in words.

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
    let ping = tokio::time::timeout(Duration::from_secs(2), s.app.nodes.db().ping()).await;
    // A database that answers a ping may still fail its writes (a full disk): the last outage
    // a writer met counts until a write works.
    let db_trouble = match ping {
        Err(_) => Some("the database did not answer in 2 s"),
        Ok(Err(e)) => Some(crate::infra::db::outage(&e).unwrap_or("the database failed a ping")),
        Ok(Ok(())) => crate::infra::db::recent_outage(),
    };
    let broker_ok = s.app.bridge.is_connected();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if db_trouble.is_none() && broker_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({
        "database": word(db_trouble.is_none()),
        "broker": word(broker_ok),
    });
    if let Some(why) = db_trouble {
        body["databaseReason"] = why.into();
    }
    (status, Json(body)).into_response()
}
