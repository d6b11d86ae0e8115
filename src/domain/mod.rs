//! The configuration model: servers (Icecast relays), streams, and mounts (a
//! stream on a server).
//!
//! Every value that arrives from outside (admin form, import file) is parsed
//! once into a newtype here; the rest of the program only ever sees parsed
//! values, so a bad URL or country code cannot reach the store or the
//! redirect path. Parsing collects *all* field errors at once so a form can
//! show each message beside its field.

pub mod clock;
pub(crate) mod health;
pub(crate) mod location;
pub(crate) mod network;
pub mod policy;
pub(crate) mod secret;
pub(crate) mod sync;
pub(crate) mod text;
mod usage;
mod values;

pub use clock::Clock;
pub use health::{Health, State as HealthState};
pub use location::{ClientGeo, Coords, LocationSource, Point, ResolvedLocation, distance_km};
pub use policy::{IpVersions, Policy};
pub use usage::{MountUsage, PollSource};

pub use values::{CountryCode, HttpUrl, Latitude, Longitude, MountPath, Slug, Weight};

use serde::{Deserialize, Serialize};

/// Field name → message, in the order the fields were checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn push(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
    /// Keeps the parsed value, or records the error under `field`.
    fn take<T>(&mut self, field: &'static str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(field, e);
                None
            }
        }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        f.write_str(&parts.join("; "))
    }
}

/// A server as written in the config file or submitted by the admin form,
/// before parsing. Field names are the config file's keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerInput {
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_listeners: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// 1 (default) = own relays; 2 and up = overflow, used only when every
    /// lower tier is full or down for the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<i64>,
    /// `false`: never polled (a CDN): counted by reservations alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<bool>,
    /// Client address families it can serve: `["4"]`, `["6"]` or both
    /// (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_versions: Option<Vec<String>>,
    /// A client in one of these autonomous systems prefers this relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asns: Option<Vec<i64>>,
    /// Only clients in these ASes (or `only_prefixes`) are sent here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_asns: Option<Vec<i64>>,
    /// Only clients in these CIDR prefixes (or `only_asns`) are sent here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_prefixes: Option<Vec<String>>,
    /// Outgoing bandwidth budget in Mbit/s; each listener is charged its
    /// stream's `bitrate_kbps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mbps: Option<f64>,
    /// Write-only: absent keeps the server's token, `""` removes it (an
    /// export without `--secrets` leaves it out, and importing that file
    /// back must not disable the relay's callbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, write_only)]
    pub callback_token: Option<Secret>,
}

/// A secret from outside (a relay's callback token): its `Debug` hides it,
/// so no log line or error message can carry it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// What an input says about a server's callback token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    Keep,
    Remove,
    Set(Secret),
}

/// The shortest callback token accepted: guessing one must be hopeless.
pub const MIN_CALLBACK_TOKEN: usize = 16;

impl TokenChange {
    /// `None` keeps, `""` removes, anything else must be a usable token:
    /// 16 to 200 visible ASCII characters (it goes into Icecast's XML and
    /// an HTTP basic-auth password as it is).
    pub fn parse(raw: Option<&Secret>) -> Result<TokenChange, String> {
        let Some(raw) = raw else {
            return Ok(TokenChange::Keep);
        };
        let t = raw.expose().trim();
        if t.is_empty() {
            return Ok(TokenChange::Remove);
        }
        if !(MIN_CALLBACK_TOKEN..=200).contains(&t.len()) {
            return Err(format!(
                "must be {MIN_CALLBACK_TOKEN} to 200 characters (e.g. `openssl rand -hex 24`)"
            ));
        }
        if !t
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"&<>'".contains(&b))
        {
            return Err("may hold only visible ASCII characters other than \" & < > '".into());
        }
        Ok(TokenChange::Set(Secret::new(t)))
    }
}

/// A parsed server definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub name: Slug,
    pub url: HttpUrl,
    pub https_url: Option<HttpUrl>,
    pub poll_url: Option<HttpUrl>,
    pub country: Option<CountryCode>,
    pub latitude: Option<Latitude>,
    pub longitude: Option<Longitude>,
    pub max_listeners: Option<u32>,
    pub weight: Weight,
    pub enabled: bool,
    pub policy: Policy,
}

fn blank_to_none(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_opt<T>(
    errors: &mut FieldErrors,
    field: &'static str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    raw.and_then(|r| errors.take(field, parse(r)))
}

impl ServerInput {
    pub fn parse(&self) -> Result<ServerSpec, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = e.take("name", Slug::parse(&self.name));
        let url = e.take("url", HttpUrl::parse(&self.url));
        let https_url = parse_opt(&mut e, "https_url", blank_to_none(&self.https_url), |s| {
            HttpUrl::parse(s)
        });
        let poll_url = parse_opt(&mut e, "poll_url", blank_to_none(&self.poll_url), |s| {
            HttpUrl::parse(s)
        });
        let country = parse_opt(
            &mut e,
            "country",
            blank_to_none(&self.country),
            CountryCode::parse_assigned,
        );
        let latitude = self
            .latitude
            .and_then(|v| e.take("latitude", Latitude::new(v)));
        let longitude = self
            .longitude
            .and_then(|v| e.take("longitude", Longitude::new(v)));
        if self.latitude.is_some() != self.longitude.is_some() {
            let missing = if self.latitude.is_some() {
                "longitude"
            } else {
                "latitude"
            };
            e.push(
                missing,
                "latitude and longitude go together: give both or neither",
            );
        }
        let max_listeners = self.max_listeners.and_then(|v| {
            e.take(
                "max_listeners",
                u32::try_from(v)
                    .map_err(|_| format!("must be a whole number from 0 to {}", u32::MAX)),
            )
        });
        let weight = match self.weight {
            None => Some(Weight::default()),
            Some(w) => e.take("weight", Weight::new(w)),
        };
        let policy = self.parse_policy(&mut e);
        if !e.is_empty() {
            return Err(e);
        }
        Ok(ServerSpec {
            name: name.expect("checked"),
            url: url.expect("checked"),
            https_url,
            poll_url,
            country,
            latitude,
            longitude,
            max_listeners,
            weight: weight.expect("checked"),
            enabled: self.enabled.unwrap_or(true),
            policy,
        })
    }

    fn parse_policy(&self, e: &mut FieldErrors) -> Policy {
        let d = Policy::default();
        let tier = self
            .tier
            .map_or(Some(d.tier), |t| e.take("tier", policy::parse_tier(t)));
        let ip_versions = match &self.ip_versions {
            None => Some(d.ip_versions),
            Some(l) => e.take("ip_versions", IpVersions::parse(l)),
        };
        let mut asns = |field: &'static str, l: &Option<Vec<i64>>| {
            l.as_deref()
                .map_or(Some(Vec::new()), |l| e.take(field, policy::parse_asns(l)))
        };
        let (asns, only_asns) = (asns("asns", &self.asns), asns("only_asns", &self.only_asns));
        let only_prefixes = self.only_prefixes.as_deref().map_or(Some(Vec::new()), |l| {
            e.take("only_prefixes", policy::parse_prefixes(l))
        });
        let max_mbps = self
            .max_mbps
            .and_then(|v| e.take("max_mbps", policy::parse_mbps(v)));
        Policy {
            max_mbps,
            tier: tier.unwrap_or(d.tier),
            poll: self.poll.unwrap_or(true),
            ip_versions: ip_versions.unwrap_or_default(),
            asns: asns.unwrap_or_default(),
            only_asns: only_asns.unwrap_or_default(),
            only_prefixes: only_prefixes.unwrap_or_default(),
        }
    }
}

impl From<&ServerSpec> for ServerInput {
    fn from(s: &ServerSpec) -> Self {
        let p = &s.policy;
        let list = |l: &[u32]| (!l.is_empty()).then(|| l.iter().map(|&a| i64::from(a)).collect());
        ServerInput {
            name: s.name.to_string(),
            url: s.url.to_string(),
            https_url: s.https_url.as_ref().map(ToString::to_string),
            poll_url: s.poll_url.as_ref().map(ToString::to_string),
            country: s.country.map(|c| c.to_string()),
            latitude: s.latitude.map(Latitude::get),
            longitude: s.longitude.map(Longitude::get),
            max_listeners: s.max_listeners.map(i64::from),
            weight: Some(i64::from(s.weight.get())),
            enabled: Some(s.enabled),
            callback_token: None,
            // Defaults are left out, so a file without these keys exports
            // as it was.
            tier: (p.tier != 1).then_some(i64::from(p.tier)),
            poll: (!p.poll).then_some(false),
            ip_versions: (!p.ip_versions.is_both()).then(|| p.ip_versions.labels()),
            asns: list(&p.asns),
            only_asns: list(&p.only_asns),
            only_prefixes: (!p.only_prefixes.is_empty())
                .then(|| p.only_prefixes.iter().map(ToString::to_string).collect()),
            max_mbps: p.max_mbps,
        }
    }
}

impl ServerSpec {
    /// The server as the audit log shows it: its config-file TOML.
    pub fn audit_text(&self) -> Option<String> {
        toml::to_string(&ServerInput::from(self)).ok()
    }
}

impl StreamSpec {
    /// The stream (without its mounts) as the audit log shows it.
    pub fn audit_text(&self) -> Option<String> {
        toml::to_string(&StreamInput::from(self)).ok()
    }
}

/// A stream as written in the config file, mounts included.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamInput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unknown: Option<bool>,
    /// Listeners who came over HTTPS go only to relays with an `https_url`
    /// (browsers block http:// audio on an https:// page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_https: Option<bool>,
    /// Each listener's bitrate in kbit/s, charged against the relays'
    /// `max_mbps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<i64>,
    /// `None` (key absent) leaves a stream's mounts as they are; a list
    /// (even empty) is the complete set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountInput>>,
}

/// A stream's settings without its mounts (`mounts: None`).
impl From<&StreamSpec> for StreamInput {
    fn from(s: &StreamSpec) -> Self {
        StreamInput {
            name: s.name.to_string(),
            description: Some(s.description.clone()),
            fallback_url: s.fallback_url.as_ref().map(ToString::to_string),
            allowed_countries: s
                .allowed_countries
                .as_ref()
                .map(|l| l.iter().map(ToString::to_string).collect()),
            allow_unknown: Some(s.allow_unknown),
            require_https: s.require_https.then_some(true),
            bitrate_kbps: s.bitrate_kbps.map(i64::from),
            mounts: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: Slug,
    pub description: String,
    pub fallback_url: Option<HttpUrl>,
    /// `None`: listeners from anywhere. Sorted and deduplicated.
    pub allowed_countries: Option<Vec<CountryCode>>,
    pub allow_unknown: bool,
    pub require_https: bool,
    pub bitrate_kbps: Option<u32>,
}

pub const MAX_DESCRIPTION: usize = 1000;

impl StreamInput {
    pub fn parse(&self) -> Result<StreamSpec, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = e.take("name", Slug::parse(&self.name));
        let description = self.description.as_deref().unwrap_or("").trim().to_string();
        if description.chars().count() > MAX_DESCRIPTION {
            e.push(
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            );
        }
        let fallback_url = parse_opt(
            &mut e,
            "fallback_url",
            blank_to_none(&self.fallback_url),
            HttpUrl::parse,
        );
        let allowed_countries = match &self.allowed_countries {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for c in list.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
                    match CountryCode::parse_assigned(c) {
                        Ok(c) => out.push(c),
                        Err(m) => e.push("allowed_countries", format!("{c:?}: {m}")),
                    }
                }
                out.sort();
                out.dedup();
                // An empty list from a blank form field means "no restriction";
                // refusing everyone is what disabling a stream's mounts is for.
                (!out.is_empty()).then_some(out)
            }
        };
        let bitrate_kbps = self
            .bitrate_kbps
            .and_then(|v| e.take("bitrate_kbps", policy::parse_bitrate(v)));
        if !e.is_empty() {
            return Err(e);
        }
        Ok(StreamSpec {
            bitrate_kbps,
            name: name.expect("checked"),
            description,
            fallback_url,
            allowed_countries,
            allow_unknown: self.allow_unknown.unwrap_or(true),
            require_https: self.require_https.unwrap_or(false),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MountInput {
    pub server: String,
    pub mount: String,
    /// The mount's limit when the relay reports none (status-json.xsl, a
    /// mount without `<max-listeners>`), else the lower of both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_listeners: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    pub server: Slug,
    pub mount: MountPath,
    pub max_listeners: Option<u32>,
}

/// The largest mount limit accepted (Icecast's own ceiling is far below).
pub const MAX_MOUNT_LISTENERS: i64 = 1_000_000;

impl MountInput {
    pub fn parse(&self) -> Result<MountSpec, FieldErrors> {
        let mut e = FieldErrors::default();
        let server = e.take("server", Slug::parse(&self.server));
        let mount = e.take("mount", MountPath::parse(&self.mount));
        let max_listeners = match self.max_listeners {
            None => None,
            Some(n) if (1..=MAX_MOUNT_LISTENERS).contains(&n) => Some(n as u32),
            Some(_) => {
                e.push(
                    "max_listeners",
                    format!("a whole number from 1 to {MAX_MOUNT_LISTENERS}, or empty for the relay's own"),
                );
                None
            }
        };
        if !e.is_empty() {
            return Err(e);
        }
        Ok(MountSpec {
            server: server.expect("checked"),
            mount: mount.expect("checked"),
            max_listeners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerInput {
        ServerInput {
            name: "fra-1".into(),
            url: "http://relay1.example.com:8000".into(),
            ..Default::default()
        }
    }

    #[test]
    fn minimal_server_gets_defaults() {
        let s = server().parse().unwrap();
        assert_eq!(s.weight.get(), 100);
        assert!(s.enabled);
        assert_eq!(s.url.as_str(), "http://relay1.example.com:8000");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let input = ServerInput {
            name: "no spaces".into(),
            url: "ftp://x".into(),
            https_url: Some("nohost".into()),
            country: Some("Germany".into()),
            latitude: Some(91.0),
            longitude: Some(0.0),
            max_listeners: Some(-1),
            weight: Some(0),
            ..Default::default()
        };
        let e = input.parse().unwrap_err();
        for f in [
            "name",
            "url",
            "https_url",
            "country",
            "latitude",
            "max_listeners",
            "weight",
        ] {
            assert!(e.get(f).is_some(), "no error for {f}: {e}");
        }
    }

    #[test]
    fn half_coordinates_are_refused() {
        let mut s = server();
        s.latitude = Some(50.0);
        assert!(s.parse().unwrap_err().get("longitude").is_some());
    }

    #[test]
    fn blank_optional_fields_are_absent() {
        let mut s = server();
        s.https_url = Some("  ".into());
        s.country = Some(String::new());
        let p = s.parse().unwrap();
        assert!(p.https_url.is_none() && p.country.is_none());
    }

    #[test]
    fn stream_countries_are_normalised() {
        let s = StreamInput {
            name: "live".into(),
            allowed_countries: Some(vec!["de".into(), "AT".into(), "DE".into()]),
            ..Default::default()
        }
        .parse()
        .unwrap();
        let codes: Vec<String> = s
            .allowed_countries
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(codes, ["AT", "DE"]);
    }

    #[test]
    fn round_trip_through_input() {
        let mut s = server();
        s.latitude = Some(50.11);
        s.longitude = Some(8.68);
        s.country = Some("de".into());
        let spec = s.parse().unwrap();
        assert_eq!(ServerInput::from(&spec).parse().unwrap(), spec);
    }
}
