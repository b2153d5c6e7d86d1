//! `schema.graphql` is the exported SDL: the web app's typed operations compile against it, so it
//! must not drift from the server.

#[test]
fn schema_graphql_matches_the_server() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql"))
            .expect("read schema.graphql");
    let exported = trellis_server::graphql::sdl();
    assert!(
        committed == exported,
        "schema.graphql is out of date with the server. Regenerate it with:\n\n    \
         cargo run -q -p trellis-server --bin trellis -- schema > schema.graphql\n"
    );
}
