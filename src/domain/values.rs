//! Newtypes that can only hold valid values. Each `parse` returns the message
//! an operator sees beside the field.

use std::fmt;

/// A name used in URLs and config files: ASCII letters, digits, `-` and `_`.
/// Dots are excluded because `/icecast_balancer/{stream}.m3u` uses one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    pub(crate) const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!("at most {} characters", Self::MAX_LEN));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-' and '_' (a slug like \"fra-1\")".into());
        }
        // A leading '-' reads as an option on a command line and as a
        // formula in a spreadsheet opening an exported CSV.
        if s.starts_with('-') {
            return Err("must start with a letter, a digit or '_'".into());
        }
        Ok(Slug(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute http(s) URL with a host, kept without a trailing slash so a
/// mount path can be appended directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("required: a URL such as http://relay1.example.com:8000".into());
        }
        // The URL parser's words for a missing scheme are "relative URL
        // without a base"; the form and import say what to write instead.
        if !s.contains("://") {
            return Err(format!(
                "must start with http:// or https:// (as in http://{s})"
            ));
        }
        let url = reqwest::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with http:// or https://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not contain '?' or '#'".into());
        }
        let mut out = url.to_string();
        while out.ends_with('/') {
            out.pop();
        }
        Ok(HttpUrl(out))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Icecast mount point such as `/live.mp3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MountPath(String);

impl MountPath {
    pub(crate) const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.starts_with('/') {
            return Err("must start with '/'".into());
        }
        if s.len() < 2 {
            return Err("must name a mount after '/'".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!("at most {} characters", Self::MAX_LEN));
        }
        if s.bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
        {
            return Err("no spaces, '?', '#' or non-ASCII characters".into());
        }
        Ok(MountPath(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MountPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// ISO 3166-1 alpha-2, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.trim().as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err("must be a two-letter ISO 3166-1 code such as DE".into());
        }
        Ok(CountryCode([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
        ]))
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }

    /// A code an operator typed (config file, admin form): one of the
    /// officially assigned ISO 3166-1 alpha-2 codes, with a hint for the
    /// usual mistakes. (GeoIP data goes through [`CountryCode::parse`].)
    pub(crate) fn parse_assigned(s: &str) -> Result<Self, String> {
        let code = CountryCode::parse(s)?;
        if ASSIGNED.split(' ').any(|c| c == code.as_str()) {
            return Ok(code);
        }
        Err(match code.as_str() {
            "UK" => "UK is not an ISO 3166-1 code: the United Kingdom is GB".into(),
            "EL" => "EL is the EU's code for Greece; ISO 3166-1 has GR".into(),
            "EU" => "EU is not a country: list the member countries (DE, FR, …)".into(),
            c => format!("{c} is not an assigned ISO 3166-1 country code (such as DE, GB, US)"),
        })
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes.
const ASSIGNED: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ \
EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ \
LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Latitude(f64);

impl Latitude {
    pub fn new(v: f64) -> Result<Self, String> {
        if v.is_finite() && (-90.0..=90.0).contains(&v) {
            Ok(Latitude(v))
        } else {
            Err("must be between -90 and 90".into())
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Longitude(f64);

impl Longitude {
    pub fn new(v: f64) -> Result<Self, String> {
        if v.is_finite() && (-180.0..=180.0).contains(&v) {
            Ok(Longitude(v))
        } else {
            Err("must be between -180 and 180".into())
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Relative share of listeners; 100 is normal, 200 takes twice the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(u32);

impl Weight {
    pub const MAX: u32 = 10_000;

    pub fn new(v: i64) -> Result<Self, String> {
        match u32::try_from(v) {
            Ok(w) if (1..=Self::MAX).contains(&w) => Ok(Weight(w)),
            _ => Err(format!("must be a whole number from 1 to {}", Self::MAX)),
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Weight(100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slug_does_not_start_like_a_formula_or_an_option() {
        for bad in ["-rm", "=1+1", "+1", "@sum", "-"] {
            assert!(Slug::parse(bad).is_err(), "{bad} was taken");
        }
        for good in ["fra-1", "_x", "9live", "a-"] {
            assert!(Slug::parse(good).is_ok(), "{good} was refused");
        }
    }

    #[test]
    fn slugs() {
        assert!(Slug::parse("fra-1").is_ok());
        assert!(Slug::parse("live_hq").is_ok());
        for bad in ["", "a b", "live.mp3", "x/y", "<b>", &"a".repeat(65)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            HttpUrl::parse("http://relay.example.com:8000/")
                .unwrap()
                .as_str(),
            "http://relay.example.com:8000"
        );
        assert!(HttpUrl::parse("https://r.example.com/base").is_ok());
        for bad in [
            "relay.example.com",
            "ftp://relay.example.com",
            "http://",
            "javascript:alert(1)",
            "http://u:p@relay.example.com",
            "http://r.example.com/?a=1",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mounts() {
        assert!(MountPath::parse("/live.mp3").is_ok());
        for bad in ["live.mp3", "/", "/a b", "/a?b", "/ä"] {
            assert!(MountPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn countries() {
        assert_eq!(CountryCode::parse("de").unwrap().as_str(), "DE");
        for bad in ["D", "DEU", "1A", ""] {
            assert!(CountryCode::parse(bad).is_err());
        }
    }

    #[test]
    fn ranges() {
        assert!(Latitude::new(90.0).is_ok() && Latitude::new(90.1).is_err());
        assert!(Longitude::new(-180.0).is_ok() && Longitude::new(f64::NAN).is_err());
        assert!(Weight::new(1).is_ok() && Weight::new(0).is_err());
        assert!(Weight::new(10_001).is_err());
    }
}

#[cfg(test)]
mod country_tests {
    use super::*;

    #[test]
    fn typed_country_codes_are_assigned_ones_with_hints() {
        assert_eq!(ASSIGNED.split(' ').count(), 249);
        assert_eq!(CountryCode::parse_assigned(" gb ").unwrap().as_str(), "GB");
        assert!(
            CountryCode::parse_assigned("UK")
                .unwrap_err()
                .contains("GB")
        );
        assert!(
            CountryCode::parse_assigned("EU")
                .unwrap_err()
                .contains("not a country")
        );
        assert!(
            CountryCode::parse_assigned("XX")
                .unwrap_err()
                .contains("not an assigned")
        );
        assert!(CountryCode::parse_assigned("D1").is_err());
    }
}
