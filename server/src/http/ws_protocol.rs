//! The two GraphQL-over-websocket protocols a subscription socket speaks, `graphql-transport-ws`
//! (the current one) and `graphql-ws` (the older subscriptions-transport-ws), run by one loop per
//! socket. It owns the socket's running operations (by the client's id) and what
//! `connection_init` gave them; it ends when the client goes, sends `connection_terminate`, or
//! breaks the protocol, and dropping it drops every operation.
//!
//! async-graphql brings the same loop, and it is followed here message for message (answers,
//! close codes and their reasons), with one difference: how a result is written. async-graphql
//! serializes each result for each socket; a live chart's frame, the same for every socket
//! that follows the same readings with the same selection, was serialized again for each of
//! them. Here a result's top-level field whose value is a [`Value::Binary`] is taken to be
//! JSON rendered once already (see `graphql::types::LiveFrame`) and is written as it is. Nothing
//! else in the schema gives a binary value.

use std::{collections::HashMap, future::Future, sync::Arc, task::Poll};

use async_graphql::{
    Data, Executor, Response, Value,
    http::{ClientMessage, WebSocketProtocols as Protocols},
};
use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt, stream::BoxStream};

/// The answer to a second `connection_init`.
const TOO_MANY_INITS: &str = "Too many initialisation requests.";

/// Runs the protocol on one socket until it ends: `input` is what the client sends (text and
/// binary messages), `on_init` checks `connection_init`'s payload and gives the operations'
/// data.
pub(super) async fn serve<S, R, E, I, F>(
    mut sink: S,
    mut input: R,
    executor: E,
    protocol: Protocols,
    on_init: I,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = axum::body::Bytes> + Unpin,
    E: Executor,
    I: FnOnce(serde_json::Value) -> F,
    F: Future<Output = async_graphql::Result<Data>>,
{
    let mut on_init = Some(on_init);
    let mut data: Option<Arc<Data>> = None;
    let mut running: HashMap<String, BoxStream<'static, Response>> = HashMap::new();
    loop {
        let out = tokio::select! {
            biased;
            message = input.next() => {
                let Some(message) = message else { return };
                let message = match ClientMessage::from_bytes(&message) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = sink.send(close(1002, e.to_string())).await;
                        return;
                    }
                };
                match message {
                    ClientMessage::ConnectionInit { payload } => match on_init.take() {
                        Some(check) => match check(payload.unwrap_or_default()).await {
                            Ok(d) => {
                                data = Some(Arc::new(d));
                                text(r#"{"type":"connection_ack"}"#.to_owned())
                            }
                            Err(e) => {
                                let _ = sink.send(refusal(protocol, e.message)).await;
                                return;
                            }
                        },
                        None => {
                            let _ = sink.send(match protocol {
                                Protocols::GraphQLWS => close(4429, TOO_MANY_INITS.to_owned()),
                                Protocols::SubscriptionsTransportWS => {
                                    refusal(protocol, TOO_MANY_INITS.to_owned())
                                }
                            }).await;
                            return;
                        }
                    },
                    ClientMessage::Start { id, payload } => {
                        let Some(data) = data.clone() else {
                            let _ = sink
                                .send(close(1011, "The handshake is not completed.".to_owned()))
                                .await;
                            return;
                        };
                        // An id in use: the new operation takes its place (the old one ends
                        // without a word, as in async-graphql).
                        running.insert(id, executor.execute_stream(payload, Some(data)));
                        continue;
                    }
                    ClientMessage::Stop { id } => {
                        if running.remove(&id).is_none() {
                            continue;
                        }
                        complete(&id)
                    }
                    ClientMessage::ConnectionTerminate => return,
                    ClientMessage::Ping { .. } => text(r#"{"type":"pong"}"#.to_owned()),
                    ClientMessage::Pong { .. } => continue,
                }
            }
            (id, result) = futures::future::poll_fn(|cx| next_result(&mut running, cx)) => {
                match result {
                    Some(r) => text(next(protocol, &id, &r)),
                    None => {
                        running.remove(&id);
                        complete(&id)
                    }
                }
            }
        };
        if sink.send(out).await.is_err() {
            return;
        }
    }
}

/// The first operation with something to say: its id, and its next result or `None` when it
/// ended.
fn next_result(
    running: &mut HashMap<String, BoxStream<'static, Response>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<(String, Option<Response>)> {
    for (id, stream) in running.iter_mut() {
        if let Poll::Ready(r) = stream.poll_next_unpin(cx) {
            return Poll::Ready((id.clone(), r));
        }
    }
    Poll::Pending
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

fn close(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// A refused `connection_init` (or a second one): the current protocol closes the socket with
/// 1002 and the reason, the older one says `connection_error` (and the socket then closes).
fn refusal(protocol: Protocols, reason: String) -> Message {
    match protocol {
        Protocols::GraphQLWS => close(1002, reason),
        Protocols::SubscriptionsTransportWS => {
            let mut out = br#"{"type":"connection_error","payload":{"message":"#.to_vec();
            write_json(&mut out, &reason);
            out.extend_from_slice(b"}}");
            text(json_text(out))
        }
    }
}

fn complete(id: &str) -> Message {
    let mut out = br#"{"type":"complete","id":"#.to_vec();
    write_json(&mut out, id);
    out.push(b'}');
    text(json_text(out))
}

/// Bytes made of JSON text as a string (JSON text is UTF-8; a rendered value came from
/// serde_json too).
fn json_text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A result as the protocol's `next` (or `data`) message.
fn next(protocol: Protocols, id: &str, r: &Response) -> String {
    let kind = match protocol {
        Protocols::GraphQLWS => "next",
        Protocols::SubscriptionsTransportWS => "data",
    };
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    write_json(&mut out, id);
    out.extend_from_slice(b",\"payload\":");
    payload(&mut out, r);
    out.push(b'}');
    json_text(out)
}

/// A result's payload as async-graphql writes it (`data`, then `extensions` and `errors` when
/// there are any), a top-level binary value written as the JSON it holds.
fn payload(out: &mut Vec<u8>, r: &Response) {
    out.extend_from_slice(b"{\"data\":");
    match &r.data {
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, name.as_str());
                out.push(b':');
                match value {
                    Value::Binary(rendered) => out.extend_from_slice(rendered),
                    v => write_json(out, v),
                }
            }
            out.push(b'}');
        }
        v => write_json(out, v),
    }
    if !r.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        write_json(out, &r.extensions);
    }
    if !r.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        write_json(out, &r.errors);
    }
    out.push(b'}');
}

fn write_json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) {
    // Writing to a Vec fails only for a value serde cannot represent, which these are not.
    if let Err(e) = serde_json::to_writer(&mut *out, v) {
        tracing::warn!("a subscription result could not be written: {e}");
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(data: serde_json::Value) -> Response {
        Response::new(Value::from_json(data).expect("a value"))
    }

    #[test]
    fn a_result_is_written_as_async_graphql_writes_it() {
        let mut r = response(serde_json::json!({"a": {"b": [1, 2.5, "x\"y"]}, "c": null}));
        r.errors.push(async_graphql::ServerError::new("boom", None));
        let ours: serde_json::Value =
            serde_json::from_str(&next(Protocols::GraphQLWS, "7", &r)).expect("json");
        let theirs = serde_json::json!({
            "type": "next",
            "id": "7",
            "payload": serde_json::to_value(&r).expect("json"),
        });
        assert_eq!(ours, theirs);
        let legacy: serde_json::Value =
            serde_json::from_str(&next(Protocols::SubscriptionsTransportWS, "x\"", &r))
                .expect("json");
        assert_eq!(
            (&legacy["type"], &legacy["id"]),
            (&serde_json::json!("data"), &serde_json::json!("x\""))
        );
    }

    #[test]
    fn a_rendered_value_is_written_as_it_is() {
        let mut fields = async_graphql::indexmap::IndexMap::new();
        fields.insert(
            async_graphql::Name::new("live"),
            Value::Binary(bytes::Bytes::from_static(br#"{"values":[1.5,2]}"#)),
        );
        let r = Response::new(Value::Object(fields));
        assert_eq!(
            next(Protocols::GraphQLWS, "1", &r),
            r#"{"type":"next","id":"1","payload":{"data":{"live":{"values":[1.5,2]}}}}"#
        );
    }
}
