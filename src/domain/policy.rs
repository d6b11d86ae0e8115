//! A relay's routing policy beyond place and load: its overflow tier,
//! whether it is polled, which clients it can reach (address family,
//! networks) and which it prefers (its autonomous systems).

use std::net::IpAddr;

use ipnet::IpNet;

/// The highest tier accepted: 1 = own relays, 2 and up = overflow.
pub const MAX_TIER: u8 = 9;

/// Most AS numbers or prefixes one relay may list.
pub const MAX_NETWORKS: usize = 1000;

/// The client address families a relay can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpVersions {
    pub v4: bool,
    pub v6: bool,
}

impl Default for IpVersions {
    fn default() -> Self {
        IpVersions { v4: true, v6: true }
    }
}

impl IpVersions {
    /// `["4"]`, `["6"]` or both; an empty list is refused (a relay that
    /// reaches nobody is what draining is for).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<IpVersions, String> {
        let mut v = IpVersions {
            v4: false,
            v6: false,
        };
        for s in list {
            match s.as_ref().trim() {
                "4" => v.v4 = true,
                "6" => v.v6 = true,
                other => return Err(format!("{other:?}: each entry is \"4\" or \"6\"")),
            }
        }
        if !v.v4 && !v.v6 {
            return Err("name at least one of \"4\" and \"6\"".into());
        }
        Ok(v)
    }

    pub fn is_both(self) -> bool {
        self.v4 && self.v6
    }

    /// Whether a client at `ip` can be sent here. An IPv4-mapped IPv6
    /// address is an IPv4 client.
    pub fn admits(self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(_) => self.v4,
            IpAddr::V6(_) => self.v6,
        }
    }

    /// The config file's list.
    pub fn labels(self) -> Vec<String> {
        let mut out = Vec::new();
        if self.v4 {
            out.push("4".to_string());
        }
        if self.v6 {
            out.push("6".to_string());
        }
        out
    }
}

/// A relay's routing policy; the default is a polled tier-1 relay for
/// everyone.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// 1 = own relays; a higher tier gets listeners only when every lower
    /// one is full or down for the client.
    pub tier: u8,
    /// `false`: never polled (a CDN); taken as up, every configured mount
    /// as listed, listeners counted by reservations alone.
    pub poll: bool,
    pub ip_versions: IpVersions,
    /// A client in one of these ASes prefers this relay. Sorted, unique.
    pub asns: Vec<u32>,
    /// When not empty, only clients in these ASes (or in `only_prefixes`)
    /// are sent here. Sorted, unique.
    pub only_asns: Vec<u32>,
    pub only_prefixes: Vec<IpNet>,
    /// Outgoing bandwidth budget in Mbit/s: at it, the relay is full.
    pub max_mbps: Option<f64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tier: 1,
            poll: true,
            ip_versions: IpVersions::default(),
            asns: Vec::new(),
            only_asns: Vec::new(),
            only_prefixes: Vec::new(),
            max_mbps: None,
        }
    }
}

impl Policy {
    /// Whether the relay serves only some networks.
    pub fn is_restricted(&self) -> bool {
        !self.only_asns.is_empty() || !self.only_prefixes.is_empty()
    }

    /// Whether `only_asns`/`only_prefixes` let a client at `ip` (in AS
    /// `asn`, when known) in.
    pub fn network_admits(&self, ip: IpAddr, asn: Option<u32>) -> bool {
        if !self.is_restricted() {
            return true;
        }
        let ip = ip.to_canonical();
        asn.is_some_and(|a| self.only_asns.binary_search(&a).is_ok())
            || self.only_prefixes.iter().any(|p| p.contains(&ip))
    }
}

/// A tier from the config file: 1 to [`MAX_TIER`].
pub fn parse_tier(v: i64) -> Result<u8, String> {
    u8::try_from(v)
        .ok()
        .filter(|t| (1..=MAX_TIER).contains(t))
        .ok_or_else(|| format!("a whole number from 1 to {MAX_TIER}"))
}

/// The largest bandwidth budget accepted, in Mbit/s (a terabit).
pub const MAX_MBPS: f64 = 1_000_000.0;

/// A bandwidth budget in Mbit/s: more than 0, at most [`MAX_MBPS`].
pub fn parse_mbps(v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 && v <= MAX_MBPS {
        Ok(v)
    } else {
        Err(format!("Mbit/s: a number above 0, at most {MAX_MBPS}"))
    }
}

/// The largest stream bitrate accepted, in kbit/s.
pub const MAX_BITRATE_KBPS: i64 = 100_000;

/// A stream's bitrate in kbit/s: 1 to [`MAX_BITRATE_KBPS`].
pub fn parse_bitrate(v: i64) -> Result<u32, String> {
    if (1..=MAX_BITRATE_KBPS).contains(&v) {
        Ok(v as u32)
    } else {
        Err(format!(
            "kbit/s: a whole number from 1 to {MAX_BITRATE_KBPS}"
        ))
    }
}

/// AS numbers, sorted and deduplicated.
pub fn parse_asns(list: &[i64]) -> Result<Vec<u32>, String> {
    if list.len() > MAX_NETWORKS {
        return Err(format!("at most {MAX_NETWORKS} AS numbers"));
    }
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        match u32::try_from(a) {
            Ok(n) if n > 0 => out.push(n),
            _ => return Err(format!("{a}: an AS number from 1 to {}", u32::MAX)),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// CIDR prefixes (`192.0.2.0/24`, `2001:db8::/32`); a bare address is its
/// own /32 or /128. Host bits are cleared; sorted and deduplicated.
pub fn parse_prefixes<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpNet>, String> {
    if list.len() > MAX_NETWORKS {
        return Err(format!("at most {MAX_NETWORKS} prefixes"));
    }
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let s = s.as_ref().trim();
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{s:?}: a prefix such as 192.0.2.0/24 or 2001:db8::/32"))?;
        out.push(net.trunc());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// AS numbers as an operator writes them in a form: `3320, AS8881`.
pub fn split_asns(text: &str) -> Result<Vec<i64>, String> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let digits = s
                .strip_prefix("AS")
                .or_else(|| s.strip_prefix("as"))
                .unwrap_or(s);
            digits
                .parse::<i64>()
                .map_err(|_| format!("{s:?}: an AS number such as 3320 or AS3320"))
        })
        .collect()
}

/// A list written with commas or spaces, as a form field holds it.
pub fn split_list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_versions() {
        let v4 = IpVersions::parse(&["4"]).unwrap();
        assert!(v4.admits("192.0.2.1".parse().unwrap()));
        assert!(v4.admits("::ffff:192.0.2.1".parse().unwrap()), "mapped");
        assert!(!v4.admits("2001:db8::1".parse().unwrap()));
        assert!(IpVersions::parse(&["4", "6"]).unwrap().is_both());
        assert!(IpVersions::parse::<&str>(&[]).is_err());
        assert!(IpVersions::parse(&["v6"]).is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(parse_asns(&[8881, 3320, 3320]).unwrap(), vec![3320, 8881]);
        assert!(parse_asns(&[0]).is_err());
        assert!(parse_asns(&[1 << 32]).is_err());
        let p = parse_prefixes(&["192.0.2.7/24", "2001:db8::1"]).unwrap();
        assert_eq!(p[0].to_string(), "192.0.2.0/24");
        assert_eq!(p[1].to_string(), "2001:db8::1/128");
        assert!(parse_prefixes(&["192.0.2.0/33"]).is_err());
        assert_eq!(split_asns("3320, AS8881 as1").unwrap(), vec![3320, 8881, 1]);
        assert!(split_asns("ASx").is_err());
    }

    #[test]
    fn only_networks() {
        let p = Policy {
            only_asns: vec![3320],
            only_prefixes: parse_prefixes(&["198.51.100.0/24"]).unwrap(),
            ..Policy::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p.network_admits(ip("192.0.2.1"), Some(3320)));
        assert!(!p.network_admits(ip("192.0.2.1"), Some(3321)));
        assert!(!p.network_admits(ip("192.0.2.1"), None));
        assert!(p.network_admits(ip("198.51.100.9"), None));
        assert!(Policy::default().network_admits(ip("192.0.2.1"), None));
    }
}
