//! Who the client is. Forwarding headers are believed only from trusted
//! proxies; otherwise anyone could claim any address (and so any country)
//! or claim to have come over HTTPS.
//!
//! Even from a trusted proxy only the one header it is declared to write
//! (`--forwarded-header`) is read: a proxy passes the headers it does not
//! set through untouched, so a client could otherwise send its own
//! `Forwarded` next to the proxy's `X-Forwarded-For` and pick its address.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

pub use crate::config::ForwardedHeader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The request reached the first proxy over HTTPS.
    pub https: bool,
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(&ip))
}

/// One hop of a forwarding chain, left (client side) to right.
#[derive(Debug, Clone, PartialEq)]
struct Hop {
    /// `None` when the proxy wrote "unknown" or an obfuscated name.
    ip: Option<IpAddr>,
    proto: Option<String>,
}

fn parse_node(raw: &str) -> Option<IpAddr> {
    let v = raw.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        // "[2001:db8::1]:4711" or "[2001:db8::1]"
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(ip);
    }
    // "192.0.2.1:8080" (only IPv4 carries a bare port)
    let (host, _port) = v.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// RFC 7239: `for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else { continue };
        for element in value.split(',') {
            let mut hop = Hop {
                ip: None,
                proto: None,
            };
            let mut has_for = false;
            for pair in element.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => {
                        has_for = true;
                        hop.ip = parse_node(v);
                    }
                    "proto" => hop.proto = Some(v.trim().trim_matches('"').to_ascii_lowercase()),
                    _ => {}
                }
            }
            if has_for {
                hops.push(hop);
            }
        }
    }
    hops
}

fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(|s| Hop {
            ip: parse_node(s),
            proto: None,
        })
        .collect()
}

/// `X-Real-IP` names one address, the proxy's peer; there is no chain.
fn x_real_ip_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut values = headers.get_all("x-real-ip").iter();
    match (values.next(), values.next()) {
        // Two lines: one came from the client; neither can be told apart.
        (Some(v), None) => vec![Hop {
            ip: v.to_str().ok().and_then(parse_node),
            proto: None,
        }],
        _ => Vec::new(),
    }
}

fn x_forwarded_proto_https(headers: &HeaderMap) -> bool {
    // The proxy that sets it overwrites it; a client-sent list would only
    // survive with a misconfigured proxy, and then its first entry is the
    // client's own claim. Read the last one, what our proxy appended.
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The client is the socket peer unless that peer is a trusted proxy; then
/// it is the right-most address in the declared `header` that is not
/// itself a trusted proxy. Every other forwarding header is ignored.
pub fn client_info(
    peer: IpAddr,
    headers: &HeaderMap,
    proxies: &[IpNet],
    header: ForwardedHeader,
) -> ClientInfo {
    let peer = peer.to_canonical();
    if !trusted(peer, proxies) {
        return ClientInfo {
            ip: peer,
            https: false,
        };
    }
    let hops = match header {
        ForwardedHeader::Forwarded => forwarded_hops(headers),
        ForwardedHeader::XForwardedFor => x_forwarded_hops(headers),
        ForwardedHeader::XRealIp => x_real_ip_hops(headers),
    };
    let mut client = peer;
    let mut proto = None;
    for hop in hops.iter().rev() {
        match hop.ip.map(|ip| ip.to_canonical()) {
            Some(ip) => {
                client = ip;
                proto = hop.proto.clone();
                if !trusted(ip, proxies) {
                    break;
                }
            }
            // An unknown hop ends what can be believed: the last trusted
            // proxy before it is the best address we have.
            None => break,
        }
    }
    let https = match header {
        ForwardedHeader::Forwarded => proto.as_deref() == Some("https"),
        ForwardedHeader::XForwardedFor | ForwardedHeader::XRealIp => {
            x_forwarded_proto_https(headers)
        }
    };
    ClientInfo { ip: client, https }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let c = client_info(
            ip("198.51.100.7"),
            &h(&[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(
            c,
            ClientInfo {
                ip: ip("198.51.100.7"),
                https: false
            }
        );
    }

    #[test]
    fn right_most_untrusted_address_of_a_chain() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        // 6.6.6.6 could be spoofed by the client; 203.0.113.9 is what our
        // own proxy saw.
        assert_eq!(c.ip, ip("203.0.113.9"));
    }

    #[test]
    fn multiple_header_lines_form_one_chain() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "10.0.0.1"),
            ]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(c.ip, ip("203.0.113.9"));
    }

    #[test]
    fn all_trusted_gives_left_most() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("x-forwarded-for", "10.0.0.5, 10.0.0.1")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(c.ip, ip("10.0.0.5"));
    }

    #[test]
    fn forwarded_syntax() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[(
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.2",
            )]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(
            c,
            ClientInfo {
                ip: ip("2001:db8:cafe::17"),
                https: true
            }
        );
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("forwarded", "For=192.0.2.60:8080;Proto=http")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(
            c,
            ClientInfo {
                ip: ip("192.0.2.60"),
                https: false
            }
        );
    }

    #[test]
    fn unknown_hop_stops_the_walk() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("forwarded", "for=1.1.1.1, for=unknown, for=10.0.0.9")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(c.ip, ip("10.0.0.9"));
    }

    #[test]
    fn ipv4_mapped_peer_is_matched_as_ipv4() {
        let c = client_info(
            ip("::ffff:10.0.0.2"),
            &h(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
            ]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(
            c,
            ClientInfo {
                ip: ip("203.0.113.9"),
                https: true
            }
        );
    }

    #[test]
    fn garbage_headers_fall_back_to_the_proxy() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("x-forwarded-for", "not-an-ip")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(c.ip, ip("10.0.0.2"));
    }

    #[test]
    fn only_the_declared_header_is_believed() {
        // nginx writes X-Forwarded-For and passes the client's own
        // Forwarded through: the client must not win with it.
        let headers = h(&[
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "198.51.100.1"),
        ]);
        let proxies = nets(&["127.0.0.1/32"]);
        let peer = ip("127.0.0.1");
        let pick = |header| client_info(peer, &headers, &proxies, header);
        assert_eq!(
            pick(ForwardedHeader::XForwardedFor),
            ClientInfo {
                ip: ip("203.0.113.9"),
                https: false
            }
        );
        assert_eq!(
            pick(ForwardedHeader::Forwarded),
            ClientInfo {
                ip: ip("6.6.6.6"),
                https: true
            }
        );
        assert_eq!(pick(ForwardedHeader::XRealIp).ip, ip("198.51.100.1"));
    }

    #[test]
    fn forwarded_mode_ignores_x_forwarded_proto() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[
                ("forwarded", "for=203.0.113.9"),
                ("x-forwarded-proto", "https"),
            ]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::Forwarded,
        );
        assert!(!c.https);
    }

    #[test]
    fn x_forwarded_proto_is_read_from_the_proxy_end() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https, http"),
            ]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XForwardedFor,
        );
        assert!(!c.https);
    }

    #[test]
    fn x_real_ip_twice_is_not_believed() {
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("x-real-ip", "6.6.6.6"), ("x-real-ip", "203.0.113.9")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XRealIp,
        );
        assert_eq!(c.ip, ip("10.0.0.2"));
        let c = client_info(
            ip("10.0.0.2"),
            &h(&[("x-real-ip", "[2001:db8::5]")]),
            &nets(&["10.0.0.0/8"]),
            ForwardedHeader::XRealIp,
        );
        assert_eq!(c.ip, ip("2001:db8::5"));
    }
}
