//! Hostile input, fuzzed (issue 13): every decoder of the wire that takes outside input, fed
//! generated topics and payloads (arbitrary bytes, arbitrary JSON, and valid messages with one
//! field replaced). None may panic; every refusal says what was wrong; what parses renders back
//! to what was parsed. Bounded: 256 cases per property in the test command. An input that ever
//! fails is kept by proptest in `proptest-regressions/` beside this file and tried first on
//! every later run.

use proptest::prelude::*;
use serde_json::{Value, json};
use trellis_proto::{
    BrokerAddr, DockerEndpoint, KindSpec, SettingSpec, SettingType, Settings, TOPICS, TopicKind,
    decode, decode_command, parse_topic, validate_job_name,
};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid messages of each leader-bound topic, to be mutated.
fn templates() -> Vec<(TopicKind, Value)> {
    vec![
        (
            TopicKind::Heartbeat,
            json!({"node_id": "n1", "cpu_percent": 3.5, "mem_used_bytes": 1, "mem_total_bytes": 2, "uptime_secs": 5}),
        ),
        (
            TopicKind::Status,
            json!({"node_id": "n1", "state": "online"}),
        ),
        (
            TopicKind::Readings,
            json!({"run": "0123456789abcdef", "seq": 0, "held": 0, "dropped": 0, "series": [{"job": "j", "metric": "m", "unit": "u"}], "readings": [[0, 1700000000000i64, 1.5]]}),
        ),
        (
            TopicKind::Logs,
            json!({"run": "0123456789abcdef", "seq": 0, "held": 0, "dropped": 0, "lines": [{"job": "j", "at": 1700000000000i64, "stream": "stdout", "line": "x"}]}),
        ),
        (
            TopicKind::Job,
            json!({"name": "j", "kind": "pwm", "state": "ready", "settings": {"duty": 1}}),
        ),
    ]
}

/// A leader-bound topic with a node id and job name drawn from `node` and `arg`.
fn topic() -> impl Strategy<Value = String> {
    let kinds: Vec<TopicKind> = TOPICS
        .iter()
        .filter(|t| t.direction.to_leader())
        .map(|t| t.kind)
        .collect();
    prop_oneof![
        (
            prop::sample::select(kinds),
            prop_oneof!["[a-z0-9-]{1,16}", ".{0,70}"],
            prop::option::of(prop_oneof!["[a-z0-9_-]{1,16}", ".{0,70}"]),
        )
            .prop_map(|(k, node, arg)| k.topic(&node, arg.as_deref())),
        ".{0,120}",
    ]
}

/// A payload: bytes, JSON of any shape, or a template with one field replaced.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let templates = templates();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (
            prop::sample::select(templates),
            any::<prop::sample::Index>(),
            json_value()
        )
            .prop_map(|((_, mut t), at, with)| {
                if let Value::Object(m) = &mut t {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    let key = at.get(&keys).clone();
                    m.insert(key, with);
                }
                t.to_string().into_bytes()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn topics_parse_or_not_and_render_back(topic in topic()) {
        if let Some(p) = parse_topic(&topic) {
            let arg = p.nonce.or(p.job);
            prop_assert_eq!(p.kind.topic(p.node, arg), topic);
        }
    }

    #[test]
    fn every_payload_on_every_topic_decodes_or_says_why(topic in topic(), payload in payload()) {
        if let Err(e) = decode(&topic, &payload) {
            let said = e.to_string();
            prop_assert!(!said.is_empty());
            // A refusal names the topic it came on (as it is, or quoted with escapes), or its kind.
            let quoted = format!("{topic:?}");
            prop_assert!(
                said.contains(&topic) || said.contains(&quoted) || TOPICS.iter().any(|t| said.contains(t.name)),
                "{}", said
            );
        }
    }

    #[test]
    fn templates_mutated_on_their_own_topic_decode_or_say_why(
        (kind, t) in prop::sample::select(templates()),
        at in any::<prop::sample::Index>(),
        with in json_value(),
    ) {
        let mut t = t;
        if let Value::Object(m) = &mut t {
            let keys: Vec<String> = m.keys().cloned().collect();
            m.insert(at.get(&keys).clone(), with);
        }
        let topic = kind.topic("n1", Some("j"));
        if let Err(e) = decode(&topic, t.to_string().as_bytes()) {
            prop_assert!(e.to_string().contains(&topic), "{}", e);
        }
    }

    #[test]
    fn commands_decode_or_say_why(payload in payload()) {
        if let Err(e) = decode_command(&payload) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn addresses_and_names_parse_or_say_why(text in ".{0,300}") {
        if let Err(e) = text.parse::<BrokerAddr>() {
            prop_assert!(!e.is_empty());
        }
        if let Err(e) = text.parse::<DockerEndpoint>() {
            prop_assert!(!e.is_empty());
        }
        if let Err(e) = validate_job_name(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn job_settings_resolve_or_name_the_setting(
        given in prop::collection::btree_map(
            prop_oneof![
                prop::sample::select(vec!["count".to_owned(), "ratio".to_owned(), "on".to_owned(), "label".to_owned(), "mode".to_owned()]),
                ".{0,20}",
            ],
            json_value(),
            0..6,
        ),
        open in any::<bool>(),
    ) {
        let spec = kind(open);
        let given: Settings = given.into_iter().collect();
        for result in [spec.resolve(&given).map(|_| ()), spec.check_change(&given)] {
            if let Err(e) = result {
                prop_assert!(!e.is_empty());
                prop_assert!(
                    given.keys().any(|k| e.contains(k.as_str()))
                        || e.contains("setting"),
                    "{}", e
                );
            }
        }
    }
}

/// A kind with a setting of every type.
fn kind(open: bool) -> KindSpec {
    let setting = |name: &str, ty: SettingType, default: Value| SettingSpec {
        name: name.into(),
        ty,
        unit: None,
        min: matches!(ty, SettingType::Int | SettingType::Float).then_some(0.0),
        max: matches!(ty, SettingType::Int | SettingType::Float).then_some(100.0),
        choices: if ty == SettingType::Enum {
            vec!["a".into(), "b".into()]
        } else {
            Vec::new()
        },
        default,
        live: name != "label",
        description: String::new(),
    };
    KindSpec {
        kind: "fuzz".into(),
        description: String::new(),
        settings: vec![
            setting("count", SettingType::Int, json!(1)),
            setting("ratio", SettingType::Float, json!(0.5)),
            setting("on", SettingType::Bool, json!(false)),
            setting("label", SettingType::String, json!("x")),
            setting("mode", SettingType::Enum, json!("a")),
        ],
        open,
    }
}
