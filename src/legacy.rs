//! The FastAPI predecessor's configuration: `ICECAST_RELAYS`, a comma-
//! separated list of relay hosts without a scheme
//! (`relay1.example.com,relay2.example.com:8000`), and
//! `ICECAST_RELAY_SCHEME` (default `http`). This balancer keeps relays in
//! its database instead; these turn that list into the import format.

pub const RELAYS_VAR: &str = "ICECAST_RELAYS";
pub const SCHEME_VAR: &str = "ICECAST_RELAY_SCHEME";

/// A server name from a host: lower case, anything but letters and digits
/// becomes `-` (`relay1.example.com:8000` → `relay1-example-com-8000`).
fn name_of(host: &str) -> String {
    let mut name = String::new();
    for c in host.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_matches('-').to_string()
}

/// The hosts of an `ICECAST_RELAYS` value, blanks dropped.
pub fn hosts(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect()
}

/// The relays as `[[servers]]` entries of the import format. Streams are
/// not part of the old configuration: its listeners asked for `/<mount>`
/// on any relay, so the mounts are added per stream afterwards ("Discover
/// mounts" on a server's page, or `[[streams]]` in the file).
pub fn servers_toml(value: &str, scheme: Option<&str>) -> Result<String, String> {
    let scheme = scheme
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("http");
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "{SCHEME_VAR} must be http or https, not {scheme:?}"
        ));
    }
    let hosts = hosts(value);
    if hosts.is_empty() {
        return Err(format!("{RELAYS_VAR} lists no relay"));
    }
    let mut out = format!("# From {RELAYS_VAR}={value}\n");
    for host in hosts {
        if host.contains("://") || host.contains('/') || host.contains('"') {
            return Err(format!(
                "{RELAYS_VAR}: {host:?} is not a host name (the old balancer took host or host:port, without http://)"
            ));
        }
        out.push_str(&format!(
            "\n[[servers]]\nname = \"{}\"\nurl = \"{scheme}://{host}\"\n",
            name_of(host)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_list_becomes_servers() {
        let toml = servers_toml(" relay1.example.com , Relay2.example.com:8000,,", None).unwrap();
        assert!(
            toml.contains("name = \"relay1-example-com\"\nurl = \"http://relay1.example.com\"")
        );
        assert!(toml.contains(
            "name = \"relay2-example-com-8000\"\nurl = \"http://Relay2.example.com:8000\""
        ));
        assert!(
            servers_toml("a.example", Some("https"))
                .unwrap()
                .contains("https://a.example")
        );
        assert!(
            servers_toml("http://a.example", None)
                .unwrap_err()
                .contains("without http://")
        );
        assert!(servers_toml(" , ", None).unwrap_err().contains("no relay"));
        assert!(servers_toml("a", Some("ftp")).is_err());
    }
}
