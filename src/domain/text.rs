//! Text from outside (a relay's answer, a login name) on its way into the
//! store, the log or a page: cut to a readable length and with control
//! characters escaped, so it can neither flood the database and the log
//! nor forge log lines or drive a terminal.

use std::fmt;

/// How much of a relay's text (an error, a name it reported) is kept.
pub const RELAY_TEXT_MAX: usize = 300;

/// `s` with control and bidirectional-formatting characters escaped and
/// cut once `max_chars` characters are written, saying how long it was.
/// Text already cleaned to a lower limit passes unchanged.
pub fn clean(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars + 40));
    let mut written = 0;
    for c in s.chars() {
        if written >= max_chars {
            out.push_str(&format!("… (cut, {} bytes in all)", s.len()));
            break;
        }
        let before = out.len();
        push_escaped(&mut out, c);
        written += out[before..].chars().count();
    }
    out
}

/// Displays a string with control characters escaped, for log fields:
/// `tracing::warn!(user = %Escaped(&name), …)`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = String::new();
        for c in self.0.chars() {
            if needs_escape(c) {
                buf.clear();
                push_escaped(&mut buf, c);
                f.write_str(&buf)?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    // Bidi overrides and isolates reorder what a terminal or page shows.
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            clean("a\nb\r\x1b[31mred\u{202e}", 100),
            "a\\nb\\r\\u{1b}[31mred\\u{202e}"
        );
        assert_eq!(
            Escaped("x\n2026-01-01 INFO admin login").to_string(),
            "x\\n2026-01-01 INFO admin login"
        );
        assert_eq!(Escaped("Zoë").to_string(), "Zoë");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(1_000_000);
        let c = clean(&long, 300);
        assert!(c.starts_with(&"é".repeat(300)));
        assert!(
            c.ends_with("… (cut, 2000000 bytes in all)"),
            "{}",
            &c[600..]
        );
        assert!(c.len() < 700);
        assert_eq!(clean("short", 300), "short");
        let once = clean(&"\n".repeat(1000), 300);
        assert_eq!(clean(&once, 400), once);
    }
}
