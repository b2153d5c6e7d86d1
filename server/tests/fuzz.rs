//! Hostile input, fuzzed (issue 13): the leader's decoders of outside input — experiment
//! profiles and their expressions, the config file, uploaded bundles (archives and `app.yaml`),
//! app names and versions — fed generated text and bytes, and valid inputs with random edits.
//! None may panic; every refusal says what was wrong. Bounded: 128 cases per property in the
//! test command; an input that ever fails is kept in `proptest-regressions/` beside this file.

use proptest::prelude::*;
use serde_json::{Value, json};
use trellis_server::{
    experiments::profiles::{expr, parse},
    images::bundles,
};

/// A Pioreactor profile that parses whole.
const PROFILE: &str = r#"experiment_profile_name: demo
metadata:
  author: Cam
  description: stir and heat
inputs:
  warm: 37
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 500
        - type: update
          hours_elapsed: 1.5
          options:
            target_rpm: ${{ 400 + 100 * 2 }}
pioreactors:
  worker-1:
    label: alpha
    jobs:
      temperature_automation:
        actions:
          - type: repeat
            hours_elapsed: 2
            repeat_every_hours: 0.5
            max_hours: 2
            actions:
              - type: log
                hours_elapsed: 0
                options:
                  message: "OD is ${{ ::od_reading:od }}"
          - type: when
            hours_elapsed: 0
            condition: ${{ ::od_reading:od > 0.5 && unit() == 'worker-1' }}
            actions:
              - type: stop
                hours_elapsed: 0
"#;

/// One edit of a text: a character put in, taken out or replaced, at a position.
#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, String),
    Remove(prop::sample::Index, usize),
    Replace(prop::sample::Index, String),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let piece = prop_oneof![
        ".{1,8}",
        prop::sample::select(vec![
            ":".to_owned(),
            "\n".to_owned(),
            "  ".to_owned(),
            "- ".to_owned(),
            "${{".to_owned(),
            "}}".to_owned(),
            "[".to_owned(),
            "{".to_owned(),
            "&a ".to_owned(),
            "*a".to_owned(),
            "!!binary ".to_owned(),
            "1e999".to_owned(),
            "-1".to_owned(),
        ]),
    ];
    prop::collection::vec(
        prop_oneof![
            (any::<prop::sample::Index>(), piece.clone()).prop_map(|(i, s)| Edit::Insert(i, s)),
            (any::<prop::sample::Index>(), 1usize..20).prop_map(|(i, n)| Edit::Remove(i, n)),
            (any::<prop::sample::Index>(), piece).prop_map(|(i, s)| Edit::Replace(i, s)),
        ],
        1..6,
    )
}

/// `text` with `edits` made (at character boundaries).
fn edited(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let at = |i: &prop::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len) };
        match e {
            Edit::Insert(i, s) => {
                let p = at(i, chars.len() + 1);
                chars.splice(p..p, s.chars());
            }
            Edit::Remove(i, n) => {
                let p = at(i, chars.len());
                let end = (p + n).min(chars.len());
                chars.drain(p..end);
            }
            Edit::Replace(i, s) => {
                let p = at(i, chars.len());
                let end = (p + s.chars().count()).min(chars.len());
                chars.splice(p..end, s.chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// What an expression may read: fixed values, and a reference that fails for one job.
struct Scope;

impl expr::Scope for Scope {
    fn input(&self, name: &str) -> Option<Value> {
        (name == "warm").then(|| json!(37))
    }
    fn builtin(&self, _: expr::Builtin) -> Value {
        json!("worker-1")
    }
    fn reference(&self, _: Option<&str>, job: &str, _: &str) -> Result<Value, String> {
        if job == "gone" {
            Err("job gone does not run".into())
        } else {
            Ok(json!(0.7))
        }
    }
}

/// Expression-shaped text: tokens of the language in any order.
fn expression() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "1",
        "2.5",
        "-",
        "+",
        "*",
        "/",
        "%",
        "(",
        ")",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        "!",
        "not",
        "and",
        "or",
        "warm",
        "unit()",
        "experiment()",
        "job_name()",
        "::od_reading:od",
        "worker-1:stirring:target_rpm",
        "::gone:x",
        "'text'",
        "\"x\"",
        "true",
        "false",
        "1e308",
        "9999999999999999999999",
        " ",
    ]);
    prop_oneof![
        prop::collection::vec(token, 0..24).prop_map(|t| t.concat()),
        ".{0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_edited_profile_reads_or_says_where_and_what(edits in edits()) {
        let text = edited(PROFILE, &edits);
        if let Err(errors) = parse::parse(&text) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn any_text_as_a_profile_reads_or_says_what(text in ".{0,400}") {
        if let Err(errors) = parse::parse(&text) {
            prop_assert!(errors.iter().all(|e| !e.message.is_empty()));
        }
    }

    #[test]
    fn expressions_parse_and_evaluate_or_say_what(src in expression()) {
        match expr::parse(&src) {
            Ok(e) => {
                if let Err(err) = expr::eval(&e, &Scope) {
                    prop_assert!(!err.to_string().is_empty());
                }
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn any_bytes_as_a_bundle_are_refused_with_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        match bundles::check(std::io::Cursor::new(bytes), 1 << 20) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn archives_of_any_names_and_links_are_checked_or_refused_with_a_reason(
        entries in prop::collection::vec(
            (
                prop_oneof![
                    "[a-z]{1,8}(/[a-z.]{1,8}){0,3}",
                    prop::sample::select(vec![
                        "../x".to_owned(), "/etc/passwd".to_owned(), "a/../../b".to_owned(),
                        "app.py".to_owned(), "Dockerfile".to_owned(), "app.yaml".to_owned(),
                        "flows.json".to_owned(), "top/app.py".to_owned(), ".".to_owned(),
                    ]),
                ],
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..64).prop_map(Entry::File),
                    "[a-z./]{1,16}".prop_map(Entry::Symlink),
                    "[a-z./]{1,16}".prop_map(Entry::Hardlink),
                    Just(Entry::Dir),
                ],
            ),
            0..8,
        ),
    ) {
        let tar = archive(&entries);
        if let Err(e) = bundles::check(std::io::Cursor::new(tar), 1 << 20) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn any_app_yaml_reads_or_says_what(text in ".{0,300}", edits in edits()) {
        for t in [text, edited("name: hello\nversion: '1.0'\ndescription: hi\nbuild: node\nparameters:\n  - name: GREETING\n    type: string\n    default: hi\n  - name: RATE\n    type: int\n    default: 3\n", &edits)] {
            if let Err(e) = bundles::parse_manifest(&t) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn names_and_versions_are_checked_with_a_reason(text in ".{0,80}") {
        for r in [bundles::check_name(&text), bundles::check_version(&text)] {
            if let Err(e) = r {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn a_config_file_of_any_values_resolves_or_names_the_key(
        lines in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "http_listen", "mqtt_listen", "broker_url", "database_url", "local_agent",
                    "heartbeat_secs", "request_timeout_secs", "cors_origins", "disk_margin_mib",
                    "prune_every_secs", "sideload_parallel", "upload_max_mib", "data_dir",
                ]),
                prop_oneof![
                    "\"[ -~]{0,30}\"",
                    "-?[0-9]{1,25}",
                    Just("true".to_owned()),
                    Just("[1, \"x\"]".to_owned()),
                    Just("{ a = 1 }".to_owned()),
                    "[ -~]{0,20}",
                ],
            ),
            0..6,
        ),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trellis.toml");
        let text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        std::fs::write(&path, &text).expect("write");
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: trellis_server::config::Args,
        }
        let cli = Cli::try_parse_from(["trellis", "--config", path.to_str().expect("path")]).expect("flags");
        if let Err(e) = cli.args.resolve() {
            let said = e.to_string();
            prop_assert!(
                said.contains("trellis.toml") || lines.iter().any(|(k, _)| said.contains(k)),
                "{} for:\n{}", said, text
            );
        }
    }
}

/// An entry of a generated archive.
#[derive(Debug, Clone)]
enum Entry {
    File(Vec<u8>),
    Symlink(String),
    Hardlink(String),
    Dir,
}

/// A tar of `entries`, written header by header (names the `tar` crate's own checks would
/// refuse go in raw, as a hostile client would send them).
fn archive(entries: &[(String, Entry)]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for (name, entry) in entries {
        let mut h = tar::Header::new_gnu();
        let raw = name.as_bytes();
        let n = raw.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&raw[..n]);
        h.set_mode(0o644);
        let data: &[u8] = match entry {
            Entry::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                d
            }
            Entry::Symlink(t) | Entry::Hardlink(t) => {
                h.set_entry_type(if matches!(entry, Entry::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let t = t.as_bytes();
                let m = t.len().min(99);
                h.as_old_mut().linkname[..m].copy_from_slice(&t[..m]);
                &[]
            }
            Entry::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                &[]
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, data).expect("append");
    }
    out.into_inner().expect("tar")
}
