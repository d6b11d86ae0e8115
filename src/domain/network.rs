//! How client addresses are grouped for per-client limits.
//!
//! An IPv6 subscriber gets a whole /64 and may use any address in it, so
//! one IPv6 "address" for a limit is its /64. A network is what one
//! party can plausibly hold: a /24 of IPv4, the same /64 of IPv6. Every
//! per-client limit counts by one of these two, never by the raw address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address as a per-address limit counts it: IPv4 as it is, IPv6 by
/// its /64 (IPv4-mapped IPv6 as IPv4).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, 64)),
    }
}

/// The network the address belongs to: its /24 for IPv4, its /64 for IPv6.
pub fn network_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, 64)),
    }
}

fn mask_v6(v6: Ipv6Addr, bits: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(v6) & (u128::MAX << (128 - bits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_its_64_and_ipv4_by_address_or_24() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            network_key(ip("2001:db8:1:2:ffff::9")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(network_key(ip("192.0.2.7")), ip("192.0.2.0"));
        assert_eq!(network_key(ip("::ffff:192.0.2.7")), ip("192.0.2.0"));
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }
}
