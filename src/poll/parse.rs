//! Parsers for what a relay reports: our `load.xsl` (old text-only form and
//! the new form with attributes) and Icecast's own `/status-json.xsl`.
//!
//! Both are strict about structure (a truncated or garbled answer is an
//! error, never a partial list) and lenient about content they cannot use (a
//! mount name we could never configure is skipped, not fatal).

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::domain::{MountPath, MountUsage};

fn number(raw: &str, what: &str) -> Result<u32, String> {
    let t = raw.trim();
    // Icecast prints counts as plain integers; anything else is a broken
    // stylesheet or a proxy error page, not a number to guess at.
    t.parse::<i64>()
        .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32)
        .map_err(|_| format!("{what} is not a number: {:?}", truncate(t)))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn is_unlimited(raw: &str) -> bool {
    let t = raw.trim();
    t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("nan") || t.is_empty()
}

struct PendingMount {
    name: String,
    listeners: Option<String>,
    max: Option<String>,
    text: String,
}

fn start_mount(e: &BytesStart<'_>) -> Result<PendingMount, String> {
    let mut m = PendingMount {
        name: String::new(),
        listeners: None,
        max: None,
        text: String::new(),
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?
            .into_owned();
        match attr.key.as_ref() {
            "name" => m.name = value,
            "listeners" => m.listeners = Some(value),
            "max" => m.max = Some(value),
            _ => {}
        }
    }
    Ok(m)
}

fn finish_mount(m: PendingMount, out: &mut Vec<MountUsage>) -> Result<(), String> {
    let Ok(mount) = MountPath::parse(&m.name) else {
        return Ok(());
    };
    let usage = match m.listeners {
        Some(l) => MountUsage {
            mount,
            listeners: number(&l, "listeners")?,
            max: match m.max.as_deref() {
                None => None,
                Some(x) if is_unlimited(x) => None,
                Some(x) => Some(number(x, "max")?),
            },
        },
        // Old form: the text is the free-slot count and nothing else is
        // known, so model it as an empty mount of that size.
        None if is_unlimited(&m.text) => MountUsage {
            mount,
            listeners: 0,
            max: None,
        },
        None => MountUsage {
            mount,
            listeners: 0,
            max: Some(number(&m.text, "free slots")?),
        },
    };
    out.push(usage);
    Ok(())
}

/// Parses `<load><mount name="/x" listeners="1" max="10">9</mount>…</load>`.
pub fn parse_load_xsl(body: &[u8]) -> Result<Vec<MountUsage>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("load.xsl is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("load.xsl answered an empty body".into());
    }
    let mut reader = Reader::from_str(text);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<PendingMount> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("load.xsl is not well-formed XML: {e}"))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                match (depth, e.name().as_ref()) {
                    (1, "load") => seen_root = true,
                    (1, other) => {
                        return Err(format!("expected <load>, found <{}>", other));
                    }
                    (2, "mount") => current = Some(start_mount(&e)?),
                    _ => {}
                }
            }
            Event::Empty(e) => match (depth + 1, e.name().as_ref()) {
                (1, "load") => seen_root = true,
                (1, other) => {
                    return Err(format!("expected <load>, found <{}>", other));
                }
                (2, "mount") => finish_mount(start_mount(&e)?, &mut out)?,
                _ => {}
            },
            Event::Text(t) => {
                if let Some(m) = current.as_mut() {
                    m.text.push_str(&t);
                } else if depth == 0 && !t.trim().is_empty() {
                    return Err("text outside <load>: is this really load.xsl?".into());
                }
            }
            Event::End(_) => {
                if depth == 2
                    && let Some(m) = current.take()
                {
                    finish_mount(m, &mut out)?;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err("load.xsl answer is truncated".into());
    }
    if !seen_root {
        return Err("load.xsl answer has no <load> element".into());
    }
    Ok(out)
}

/// Parses Icecast's `/status-json.xsl`, whose `icestats.source` is absent
/// (no sources), an object (one) or an array (several). It has no
/// per-mount limit, so such mounts count as unlimited.
pub fn parse_status_json(body: &[u8]) -> Result<Vec<MountUsage>, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("status-json.xsl is not valid JSON: {e}"))?;
    let stats = v
        .get("icestats")
        .ok_or("status-json.xsl has no \"icestats\" object")?;
    let sources: Vec<&serde_json::Value> = match stats.get("source") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::Array(a)) => a.iter().collect(),
        Some(o @ serde_json::Value::Object(_)) => vec![o],
        Some(_) => return Err("status-json.xsl \"source\" is neither object nor array".into()),
    };
    let mut out = Vec::new();
    for s in sources {
        let Some(url) = s.get("listenurl").and_then(|u| u.as_str()) else {
            continue;
        };
        let path = match reqwest::Url::parse(url) {
            Ok(u) => u.path().to_string(),
            Err(_) => continue,
        };
        let Ok(mount) = MountPath::parse(&path) else {
            continue;
        };
        let listeners = match s.get("listeners") {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32
            }
            Some(serde_json::Value::String(t)) => number(t, "listeners")?,
            _ => 0,
        };
        let max = match s.get("max_listeners") {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v.min(u32::MAX as u64) as u32),
            _ => None,
        };
        out.push(MountUsage {
            mount,
            listeners,
            max,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mount: &str, listeners: u32, max: Option<u32>) -> MountUsage {
        MountUsage {
            mount: MountPath::parse(mount).unwrap(),
            listeners,
            max,
        }
    }

    #[test]
    fn new_form() {
        let xml = br#"<?xml version="1.0"?>
            <load><mount name="/live.mp3" listeners="12" max="100">88</mount>
            <mount name="/hq.ogg" listeners="3" max="unlimited">unlimited</mount></load>"#;
        assert_eq!(
            parse_load_xsl(xml).unwrap(),
            vec![m("/live.mp3", 12, Some(100)), m("/hq.ogg", 3, None)]
        );
    }

    #[test]
    fn old_text_only_form() {
        let xml = b"<load><mount name=\"/live.mp3\">88</mount><mount name=\"/x\">-3</mount></load>";
        assert_eq!(
            parse_load_xsl(xml).unwrap(),
            vec![m("/live.mp3", 0, Some(88)), m("/x", 0, Some(0))]
        );
    }

    #[test]
    fn old_form_with_nan_for_unlimited() {
        let xml = b"<load><mount name=\"/live.mp3\">NaN</mount></load>";
        assert_eq!(parse_load_xsl(xml).unwrap(), vec![m("/live.mp3", 0, None)]);
    }

    #[test]
    fn empty_server() {
        assert!(parse_load_xsl(b"<load/>").unwrap().is_empty());
        assert!(parse_load_xsl(b"<load>\n</load>").unwrap().is_empty());
        assert!(
            parse_load_xsl(b"<?xml version=\"1.0\"?>\n<load></load>\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn self_closing_mount() {
        let xml = b"<load><mount name=\"/a\" listeners=\"1\" max=\"2\"/></load>";
        assert_eq!(parse_load_xsl(xml).unwrap(), vec![m("/a", 1, Some(2))]);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b""[..],
            b"   ",
            b"<html><body>404 Not Found</body></html>",
            b"not xml at all",
            b"<load><mount name=\"/a\" listeners=\"x\" max=\"2\">1</mount></load>",
            b"<load><mount name=\"/a\">lots</mount></load>",
            b"<load><mount></load>",
        ] {
            assert!(
                parse_load_xsl(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn truncated_is_an_error() {
        let full = br#"<load><mount name="/a" listeners="1" max="5">4</mount><mount name="/b" listeners="2" max="5">3</mount></load>"#;
        for cut in 1..full.len() - 1 {
            let r = parse_load_xsl(&full[..cut]);
            assert!(r.is_err(), "accepted a cut at {cut}: {r:?}");
        }
    }

    #[test]
    fn non_utf8_is_an_error() {
        let e = parse_load_xsl(b"<load><mount name=\"/\xff\">1</mount></load>").unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn huge_answer_parses_without_trouble() {
        let mut xml = String::from("<load>");
        for i in 0..20_000 {
            xml.push_str(&format!(
                "<mount name=\"/m{i}\" listeners=\"{i}\" max=\"100000\">{}</mount>",
                100_000 - i
            ));
        }
        xml.push_str("</load>");
        let r = parse_load_xsl(xml.as_bytes()).unwrap();
        assert_eq!(r.len(), 20_000);
        assert_eq!(r[19_999], m("/m19999", 19_999, Some(100_000)));
    }

    #[test]
    fn unusable_mount_names_are_skipped() {
        let xml = b"<load><mount name=\"relative\" listeners=\"1\" max=\"2\">1</mount><mount name=\"/ok\" listeners=\"1\" max=\"2\">1</mount></load>";
        assert_eq!(parse_load_xsl(xml).unwrap(), vec![m("/ok", 1, Some(2))]);
    }

    #[test]
    fn status_json_shapes() {
        let none = br#"{"icestats":{"admin":"x","host":"localhost"}}"#;
        assert!(parse_status_json(none).unwrap().is_empty());
        let one = br#"{"icestats":{"source":{"listenurl":"http://localhost:8000/live.mp3","listeners":4}}}"#;
        assert_eq!(
            parse_status_json(one).unwrap(),
            vec![m("/live.mp3", 4, None)]
        );
        let many = br#"{"icestats":{"source":[
            {"listenurl":"http://h:8000/a","listeners":1},
            {"listenurl":"http://h:8000/b","listeners":2,"max_listeners":10}]}}"#;
        assert_eq!(
            parse_status_json(many).unwrap(),
            vec![m("/a", 1, None), m("/b", 2, Some(10))]
        );
    }

    #[test]
    fn status_json_garbage() {
        assert!(parse_status_json(b"{").is_err());
        assert!(parse_status_json(b"[]").is_err());
        assert!(parse_status_json(br#"{"icestats":{"source":5}}"#).is_err());
    }
}
