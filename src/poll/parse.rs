//! Parsers for what a relay reports: our `load.xsl` (old text-only form and
//! the new form with attributes) and Icecast's own `/status-json.xsl`.
//!
//! Both are strict about structure (a truncated or garbled answer is an
//! error, never a partial list) and lenient about content they cannot use (a
//! mount name we could never configure is skipped, not fatal). A limit that
//! cannot be read (empty, CDATA, negative, fractional) is an error for the
//! relay, never "unlimited": failing open would send it every listener. A
//! mount listed twice is an error too, since either entry could be wrong.

use std::collections::HashSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::domain::text::clean;
use crate::domain::{MountPath, MountUsage};

/// The old form's free-slot text: negative when a mount is over its limit.
fn number(raw: &str, what: &str) -> Result<u32, String> {
    let t = raw.trim();
    // Icecast prints counts as plain integers; anything else is a broken
    // stylesheet or a proxy error page, not a number to guess at.
    t.parse::<i64>()
        .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32)
        .map_err(|_| format!("{what} is not a number: {:?}", truncate(t)))
}

/// A listener count or a limit: a whole number, zero or more.
fn count(raw: &str, what: &str) -> Result<u32, String> {
    let t = raw.trim();
    t.parse::<u64>()
        .map(|v| v.min(u64::from(u32::MAX)) as u32)
        .map_err(|_| {
            format!(
                "{what} is not a whole number of listeners: {:?}",
                truncate(t)
            )
        })
}

fn truncate(s: &str) -> String {
    clean(s, 40)
}

fn is_unlimited(raw: &str) -> bool {
    let t = raw.trim();
    t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("nan")
}

struct PendingMount {
    name: String,
    listeners: Option<String>,
    max: Option<String>,
    text: String,
    /// A CDATA section in the text: never how load.xsl writes a count.
    cdata: bool,
}

fn start_mount(e: &BytesStart<'_>) -> Result<PendingMount, String> {
    let mut m = PendingMount {
        name: String::new(),
        listeners: None,
        max: None,
        text: String::new(),
        cdata: false,
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

/// The names of the mounts listed so far: a repeat is found in one lookup,
/// not a scan of every mount before it (a relay may list 36,000).
#[derive(Default)]
struct Seen(HashSet<String>);

impl Seen {
    fn first_time(&mut self, mount: &MountPath) -> Result<(), String> {
        if self.0.insert(mount.as_str().to_owned()) {
            Ok(())
        } else {
            Err(format!("mount {mount} is listed twice"))
        }
    }
}

fn finish_mount(m: PendingMount, out: &mut Vec<MountUsage>, seen: &mut Seen) -> Result<(), String> {
    let Ok(mount) = MountPath::parse(&m.name) else {
        return Ok(());
    };
    seen.first_time(&mount)?;
    if m.cdata {
        return Err(format!("mount {mount}: CDATA where a number belongs"));
    }
    let usage = match m.listeners {
        Some(l) => MountUsage {
            mount,
            listeners: count(&l, "listeners")?,
            max: match m.max.as_deref() {
                None => None,
                Some(x) if is_unlimited(x) => None,
                Some(x) => Some(count(x, "max")?),
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

fn root_once(seen: bool) -> Result<bool, String> {
    if seen {
        return Err("load.xsl answer has a second <load> element".into());
    }
    Ok(true)
}

fn wrong_root(name: &str) -> String {
    format!("expected <load>, found <{}>", clean(name, 60))
}

/// Parses `<load><mount name="/x" listeners="1" max="10">9</mount>…</load>`.
pub fn parse_load_xsl(body: &[u8]) -> Result<Vec<MountUsage>, String> {
    parse_load(body).map(|(mounts, _)| mounts)
}

/// What the root element may add: `<load listener_connections="N">`, the
/// relay's cumulative count of listeners it accepted (Icecast and
/// Icecast-KH publish it to stylesheets). Absent in older load.xsl files.
fn load_connections(e: &BytesStart<'_>) -> Result<Option<u64>, String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        if attr.key.as_ref() == "listener_connections" {
            let v = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad attribute value: {e}"))?;
            return Ok(v.trim().parse::<u64>().ok());
        }
    }
    Ok(None)
}

/// `parse_load_xsl` plus the root's `listener_connections`.
pub(crate) fn parse_load(body: &[u8]) -> Result<(Vec<MountUsage>, Option<u64>), String> {
    let mut connections = None;
    let text = std::str::from_utf8(body).map_err(|e| format!("load.xsl is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("load.xsl answered an empty body".into());
    }
    let mut reader = Reader::from_str(text);
    let mut out = Vec::new();
    let mut seen = Seen::default();
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
                    (1, "load") => {
                        seen_root = root_once(seen_root)?;
                        connections = load_connections(&e)?;
                    }
                    (1, other) => return Err(wrong_root(other)),
                    (2, "mount") => current = Some(start_mount(&e)?),
                    _ => {}
                }
            }
            Event::Empty(e) => match (depth + 1, e.name().as_ref()) {
                (1, "load") => {
                    seen_root = root_once(seen_root)?;
                    connections = load_connections(&e)?;
                }
                (1, other) => return Err(wrong_root(other)),
                (2, "mount") => finish_mount(start_mount(&e)?, &mut out, &mut seen)?,
                _ => {}
            },
            Event::CData(_) => {
                if let Some(m) = current.as_mut() {
                    m.cdata = true;
                }
            }
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
                    finish_mount(m, &mut out, &mut seen)?;
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
    Ok((out, connections))
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
    let mut seen = Seen::default();
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
        seen.first_time(&mount)?;
        let listeners = match s.get("listeners") {
            None | Some(serde_json::Value::Null) => 0,
            Some(v) => json_count(v, "listeners")?
                .ok_or_else(|| format!("mount {mount}: listeners cannot be \"unlimited\""))?,
        };
        let max = match s.get("max_listeners") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => json_count(v, "max_listeners")?,
        };
        out.push(MountUsage {
            mount,
            listeners,
            max,
        });
    }
    Ok(out)
}

/// A count in status-json: a whole number, zero or more, as a number or as
/// text; `None` for "unlimited".
fn json_count(v: &serde_json::Value, what: &str) -> Result<Option<u32>, String> {
    match v {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(v) => Ok(Some(v.min(u64::from(u32::MAX)) as u32)),
            None => Err(format!("{what} is not a whole number of listeners: {n}")),
        },
        serde_json::Value::String(t) if is_unlimited(t) => Ok(None),
        serde_json::Value::String(t) => count(t, what).map(Some),
        _ => Err(format!("{what} is not a number")),
    }
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
    fn listener_connections_on_the_root() {
        let xml = br#"<load listener_connections="4711"><mount name="/a" listeners="1" max="2">1</mount></load>"#;
        let (mounts, connections) = parse_load(xml).unwrap();
        assert_eq!((mounts.len(), connections), (1, Some(4711)));
        assert_eq!(parse_load(b"<load/>").unwrap().1, None);
        assert_eq!(
            parse_load(b"<load listener_connections=\"x\"/>").unwrap().1,
            None
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
    fn unreadable_limits_are_errors_not_unlimited() {
        for bad in [
            &br#"<load><mount name="/a"><![CDATA[]]></mount></load>"#[..],
            br#"<load><mount name="/a"><![CDATA[5]]></mount></load>"#,
            br#"<load><mount name="/a"></mount></load>"#,
            br#"<load><mount name="/a">  </mount></load>"#,
            br#"<load><mount name="/a"/></load>"#,
            br#"<load><mount name="/a" listeners="1" max="">0</mount></load>"#,
            br#"<load><mount name="/a" listeners="1" max="-5">0</mount></load>"#,
            br#"<load><mount name="/a" listeners="1" max="2.5">0</mount></load>"#,
            br#"<load><mount name="/a" listeners="-1" max="5">0</mount></load>"#,
        ] {
            let r = parse_load_xsl(bad);
            assert!(r.is_err(), "{}: {r:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_mount_listed_twice_is_an_error() {
        let xml = br#"<load><mount name="/a" listeners="1" max="2">1</mount><mount name="/a" listeners="0" max="unlimited">unlimited</mount></load>"#;
        let e = parse_load_xsl(xml).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let json = br#"{"icestats":{"source":[
            {"listenurl":"http://h/a","listeners":1,"max_listeners":2},
            {"listenurl":"http://h/a","listeners":0}]}}"#;
        assert!(
            parse_status_json(json)
                .unwrap_err()
                .contains("listed twice")
        );
    }

    #[test]
    fn a_second_root_is_an_error() {
        for bad in [
            &b"<load/><load/>"[..],
            b"<load></load><load><mount name=\"/a\">5</mount></load>",
        ] {
            assert!(
                parse_load_xsl(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn status_json_limits_must_be_whole_and_not_negative() {
        for max in ["-1", "2.5", "\"x\"", "true", "1e3"] {
            let body = format!(
                r#"{{"icestats":{{"source":{{"listenurl":"http://h/a","listeners":1,"max_listeners":{max}}}}}}}"#
            );
            let r = parse_status_json(body.as_bytes());
            assert!(r.is_err(), "max_listeners {max}: {r:?}");
        }
        let body = br#"{"icestats":{"source":{"listenurl":"http://h/a","listeners":-3}}}"#;
        assert!(parse_status_json(body).is_err());
        let body = br#"{"icestats":{"source":{"listenurl":"http://h/a","listeners":"4","max_listeners":"unlimited"}}}"#;
        assert_eq!(parse_status_json(body).unwrap(), vec![m("/a", 4, None)]);
    }

    #[test]
    fn a_huge_element_name_is_cut_in_the_error() {
        let xml = format!("<{}/>", "x".repeat(1_000_000));
        let e = parse_load_xsl(xml.as_bytes()).unwrap_err();
        assert!(e.len() < 200, "{} bytes", e.len());
    }

    #[test]
    fn status_json_garbage() {
        assert!(parse_status_json(b"{").is_err());
        assert!(parse_status_json(b"[]").is_err());
        assert!(parse_status_json(br#"{"icestats":{"source":5}}"#).is_err());
    }

    /// The best of five runs of each of `small` and `large`, taken in
    /// turn so that load from elsewhere weighs on both alike: the ratio
    /// of their times.
    fn ratio_of_best(mut small: impl FnMut(), mut large: impl FnMut()) -> f64 {
        let time = |f: &mut dyn FnMut()| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        };
        let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..5 {
            a = a.min(time(&mut small));
            b = b.min(time(&mut large));
        }
        b / a
    }

    fn load_xsl_of(n: usize) -> Vec<u8> {
        let mut xml = String::from("<load>");
        for i in 0..n {
            xml.push_str(&format!(
                "<mount name=\"/m{i}\" listeners=\"1\" max=\"9\">8</mount>"
            ));
        }
        xml.push_str("</load>");
        xml.into_bytes()
    }

    fn status_json_of(n: usize) -> Vec<u8> {
        let sources: Vec<serde_json::Value> = (0..n)
            .map(
                |i| serde_json::json!({"listenurl": format!("http://r:8000/m{i}"), "listeners": 1}),
            )
            .collect();
        serde_json::json!({"icestats": {"source": sources}})
            .to_string()
            .into_bytes()
    }

    /// A relay listing tens of thousands of mounts (the 1 MiB cap lets
    /// about 36,000 through) costs time in proportion: eight times the
    /// mounts may take at most 24 times as long (a check of each mount
    /// against all before it takes 64 times).
    #[test]
    fn parsing_is_linear_in_the_mounts_listed() {
        let (small, large) = (2_500, 20_000);
        for (what, make, parse) in [
            (
                "load.xsl",
                load_xsl_of as fn(usize) -> Vec<u8>,
                parse_load_xsl as fn(&[u8]) -> Result<Vec<MountUsage>, String>,
            ),
            ("status-json", status_json_of, parse_status_json),
        ] {
            let (a, b) = (make(small), make(large));
            assert_eq!(parse(&b).unwrap().len(), large);
            let ratio = ratio_of_best(|| drop(parse(&a)), || drop(parse(&b)));
            assert!(
                ratio < 24.0,
                "{what}: 8 times the mounts took {ratio:.1} times as long"
            );
        }
    }
}
