//! The file's shape, checked before serde reads it: which keys exist and
//! what each holds. serde stops at the first unknown key and words a wrong
//! type as `expected i64`; this walk reports every such problem, each with
//! its entry and key, in the words an operator reads.

use toml::{Table, Value};

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Number,
    Whole,
    YesNo,
    TextList,
    WholeList,
    Mounts,
}

impl Kind {
    fn words(self) -> &'static str {
        match self {
            Kind::Text => "text in quotes",
            Kind::Number => "a number",
            Kind::Whole => "a whole number",
            Kind::YesNo => "true or false",
            Kind::TextList => "a list of texts in quotes",
            Kind::WholeList => "a list of whole numbers",
            Kind::Mounts => "a list of { server = …, mount = … } tables",
        }
    }

    fn fits(self, v: &Value) -> bool {
        match self {
            Kind::Text => v.is_str(),
            // TOML writes 52 and 52.0 differently; both are a latitude.
            Kind::Number => v.is_float() || v.is_integer(),
            Kind::Whole => v.is_integer(),
            Kind::YesNo => v.is_bool(),
            Kind::TextList => v.as_array().is_some_and(|l| l.iter().all(Value::is_str)),
            Kind::WholeList => v
                .as_array()
                .is_some_and(|l| l.iter().all(Value::is_integer)),
            Kind::Mounts => v.as_array().is_some_and(|l| l.iter().all(Value::is_table)),
        }
    }
}

/// A key of an entry: its name, what it holds, whether it is required.
type Key = (&'static str, Kind, bool);

/// The keys of `ServerInput`, `StreamInput` and `MountInput` (a test
/// checks these lists against the structs).
const SERVER: &[Key] = &[
    ("name", Kind::Text, true),
    ("url", Kind::Text, true),
    ("https_url", Kind::Text, false),
    ("poll_url", Kind::Text, false),
    ("country", Kind::Text, false),
    ("latitude", Kind::Number, false),
    ("longitude", Kind::Number, false),
    ("max_listeners", Kind::Whole, false),
    ("weight", Kind::Whole, false),
    ("enabled", Kind::YesNo, false),
    ("tier", Kind::Whole, false),
    ("poll", Kind::YesNo, false),
    ("ip_versions", Kind::TextList, false),
    ("asns", Kind::WholeList, false),
    ("only_asns", Kind::WholeList, false),
    ("only_prefixes", Kind::TextList, false),
    ("max_mbps", Kind::Number, false),
    ("callback_token", Kind::Text, false),
];
const STREAM: &[Key] = &[
    ("name", Kind::Text, true),
    ("description", Kind::Text, false),
    ("fallback_url", Kind::Text, false),
    ("allowed_countries", Kind::TextList, false),
    ("allow_unknown", Kind::YesNo, false),
    ("require_https", Kind::YesNo, false),
    ("bitrate_kbps", Kind::Whole, false),
    ("mounts", Kind::Mounts, false),
];
const MOUNT: &[Key] = &[
    ("server", Kind::Text, true),
    ("mount", Kind::Text, true),
    ("max_listeners", Kind::Whole, false),
];

/// Every problem with the file's keys and value types, each as
/// `entry: key: what is wrong`; empty when serde can read it.
pub(super) fn problems(file: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in file {
        let keys = match key.as_str() {
            "servers" => SERVER,
            "streams" => STREAM,
            _ => {
                out.push(format!(
                    "{key}: unknown key (a file holds [[servers]] and [[streams]] entries)"
                ));
                continue;
            }
        };
        let Some(list) = value.as_array().filter(|l| l.iter().all(Value::is_table)) else {
            out.push(format!("{key}: must be a list of [[{key}]] entries"));
            continue;
        };
        for (i, entry) in list.iter().filter_map(Value::as_table).enumerate() {
            let name = entry.get("name").and_then(Value::as_str).unwrap_or("");
            let label = super::entry_label(key, i, name);
            check(entry, keys, &label, &mut out);
            let mounts = entry.get("mounts").and_then(Value::as_array);
            for (j, m) in mounts
                .into_iter()
                .flatten()
                .filter_map(Value::as_table)
                .enumerate()
            {
                check(m, MOUNT, &format!("{label} mounts[{j}]"), &mut out);
            }
        }
    }
    out
}

fn check(entry: &Table, keys: &[Key], label: &str, out: &mut Vec<String>) {
    for (key, value) in entry {
        match keys.iter().find(|(k, ..)| k == key) {
            None => out.push(format!("{label}: {key}: unknown key ({})", hint(key, keys))),
            Some((_, kind, _)) if !kind.fits(value) => out.push(format!(
                "{label}: {key}: must be {}, got {}",
                kind.words(),
                shown(value)
            )),
            Some(_) => {}
        }
    }
    for (key, ..) in keys
        .iter()
        .filter(|(k, _, required)| *required && !entry.contains_key(*k))
    {
        out.push(format!("{label}: {key}: missing (it is required)"));
    }
}

/// "did you mean max_listeners?" for `maxlisteners` or `Max-Listeners`,
/// else the keys there are.
fn hint(key: &str, keys: &[Key]) -> String {
    let plain = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    match keys.iter().find(|(k, ..)| plain(k) == plain(key)) {
        Some((k, ..)) => format!("did you mean {k}?"),
        None => {
            let all: Vec<&str> = keys.iter().map(|(k, ..)| *k).collect();
            format!("the keys are {}", all.join(", "))
        }
    }
}

/// The value as the file wrote it, cut short if long.
fn shown(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Table(_) => "a table".to_string(),
        other => other.to_string(),
    };
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MountInput, ServerInput, StreamInput};

    /// The key lists above against the structs serde reads: a field added
    /// to one of them without its key here fails this.
    fn agree<T: serde::Serialize>(full: &T, keys: &[Key]) {
        let table = Table::try_from(full).unwrap();
        assert_eq!(table.len(), keys.len(), "{table:?}");
        for (key, value) in &table {
            let kind = keys.iter().find(|(k, ..)| k == key).map(|k| k.1);
            assert!(kind.is_some_and(|k| k.fits(value)), "{key} = {value}");
        }
    }

    #[test]
    fn the_key_lists_match_the_input_structs() {
        let mount = MountInput {
            server: "fra".into(),
            mount: "/live".into(),
            max_listeners: Some(5),
        };
        agree(&mount, MOUNT);
        agree(
            &ServerInput {
                name: "fra".into(),
                url: "http://a".into(),
                https_url: Some("https://a".into()),
                poll_url: Some("http://b".into()),
                country: Some("DE".into()),
                latitude: Some(1.5),
                longitude: Some(2.5),
                max_listeners: Some(5),
                weight: Some(100),
                enabled: Some(true),
                tier: Some(1),
                poll: Some(true),
                ip_versions: Some(vec!["4".into()]),
                asns: Some(vec![3320]),
                only_asns: Some(vec![3320]),
                only_prefixes: Some(vec!["10.0.0.0/8".into()]),
                max_mbps: Some(100.0),
                callback_token: Some(crate::domain::Secret::new("a-long-callback-token")),
            },
            SERVER,
        );
        agree(
            &StreamInput {
                name: "live".into(),
                description: Some("d".into()),
                fallback_url: Some("http://f".into()),
                allowed_countries: Some(vec!["DE".into()]),
                allow_unknown: Some(true),
                require_https: Some(false),
                bitrate_kbps: Some(128),
                mounts: Some(vec![mount.clone()]),
            },
            STREAM,
        );
    }

    #[test]
    fn a_bad_shape_is_reported_in_words_every_problem_at_once() {
        let file: Table =
            toml::from_str("servers = 3\nstreams = [{ name = 5, mounts = [{ server = \"a\" }] }]")
                .unwrap();
        assert_eq!(
            problems(&file),
            [
                "servers: must be a list of [[servers]] entries",
                "streams[0]: name: must be text in quotes, got 5",
                "streams[0] mounts[0]: mount: missing (it is required)",
            ]
        );
    }
}
