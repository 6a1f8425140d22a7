//! Source addresses: the local addresses the streams' connections come from.
//!
//! A connection is named by its source address and port and its destination: one source
//! address reaches a destination from at most the ephemeral port range (~28,000 ports), and
//! fewer once hyper binds the address before connecting (a bound port is then taken for every
//! destination). So a load of many thousands of streams spreads over several source
//! addresses, at most [`PER_ADDRESS`] connections each; on loopback every 127.x.y.z is local,
//! which makes that free.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Connections per source address: under the ~28,000 ports of the ephemeral range, with room
/// for the ports other programs on the machine take.
pub const PER_ADDRESS: usize = 20_000;
/// Addresses one range may name: more is a typing mistake, not a load.
const MAX_RANGE: u128 = 65_536;

/// What `--source-addresses` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// `none`: the OS chooses, even on loopback.
    None,
    /// These addresses, in order; stream i comes from the address i mod their number.
    These(Vec<IpAddr>),
}

/// Reads `127.0.0.2,127.0.0.3`, `127.0.0.1-127.0.0.8`, a mix of both, or `none`.
pub fn parse(text: &str) -> Result<Sources, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Sources::None);
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("`{text}` has an empty item: give addresses or ranges separated by commas"));
        }
        let more = match item.split_once('-') {
            Some((first, last)) => range(address(first.trim())?, address(last.trim())?)?,
            None => vec![address(item)?],
        };
        for ip in more {
            if addresses.contains(&ip) {
                return Err(format!(
                    "{ip} is given twice: each source address takes its share of streams once"
                ));
            }
            addresses.push(ip);
        }
    }
    Ok(Sources::These(addresses))
}

fn address(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr =
        text.parse().map_err(|_| format!("`{text}` is not an IP address (such as 127.0.0.2 or ::1)"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{ip} cannot be a connection's source address; leave --source-addresses out to let the system choose"
        ));
    }
    Ok(ip)
}

/// Every address from `first` to `last`, both included.
fn range(first: IpAddr, last: IpAddr) -> Result<Vec<IpAddr>, String> {
    let (from, to) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return Err(format!("{first}-{last} mixes IPv4 and IPv6")),
    };
    if from > to {
        return Err(format!("{first}-{last} ends before it starts"));
    }
    if to - from >= MAX_RANGE {
        return Err(format!("{first}-{last} names more than {MAX_RANGE} addresses"));
    }
    let as_ip = |n: u128| match first {
        IpAddr::V4(_) => u32::try_from(n).map(|n| IpAddr::V4(Ipv4Addr::from(n))).ok(),
        IpAddr::V6(_) => Some(IpAddr::V6(n.into())),
    };
    let all: Vec<IpAddr> = (from..=to).filter_map(as_ip).collect();
    all.iter().try_for_each(|ip| address(&ip.to_string()).map(|_| ()))?;
    Ok(all)
}

/// The addresses a run uses: those given; else, when every URL is on loopback, as many of
/// 127.0.0.1, 127.0.0.2, … as `streams` need at [`PER_ADDRESS`] each; else none (the OS
/// chooses).
pub fn choose(given: Option<&Sources>, all_loopback: bool, streams: usize) -> Vec<IpAddr> {
    match given {
        Some(Sources::These(addresses)) => addresses.clone(),
        Some(Sources::None) => Vec::new(),
        None if all_loopback => {
            let wanted = streams.div_ceil(PER_ADDRESS).max(1);
            // 127.0.0.1 … 127.255.255.254 is more than any machine opens.
            (1..=wanted as u32).map(|n| IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n))).collect()
        }
        None => Vec::new(),
    }
}

/// Whether a URL's host is this machine through loopback: 127.0.0.0/8 or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    // An IPv6 host comes in brackets, so it is neither: ::1 is left to the OS.
    match url.host_str() {
        Some(host) => {
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Binds each address once, so that one this machine does not have is an error at the start
/// rather than an error per stream.
pub fn check_local(addresses: &[IpAddr]) -> anyhow::Result<()> {
    for ip in addresses {
        std::net::TcpListener::bind(SocketAddr::new(*ip, 0)).map_err(|error| {
            anyhow::anyhow!("source address {ip} cannot be used on this machine: {error}")
        })?;
    }
    Ok(())
}

/// `127.0.0.1-127.0.0.3` for a run of consecutive addresses, else the list.
pub fn describe(addresses: &[IpAddr]) -> String {
    let consecutive = addresses.windows(2).all(|w| match (w[0], w[1]) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a).checked_add(1) == Some(u32::from(b)),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a).checked_add(1) == Some(u128::from(b)),
        _ => false,
    });
    match (addresses.first(), addresses.last()) {
        (Some(first), Some(last)) if consecutive && addresses.len() > 2 => format!("{first}-{last}"),
        _ => addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse("127.0.0.2,127.0.0.3"), Ok(Sources::These(ips(&["127.0.0.2", "127.0.0.3"]))));
        assert_eq!(
            parse("127.0.0.1-127.0.0.3, 10.0.0.1"),
            Ok(Sources::These(ips(&["127.0.0.1", "127.0.0.2", "127.0.0.3", "10.0.0.1"])))
        );
        assert_eq!(parse("127.0.0.255-127.0.1.0"), Ok(Sources::These(ips(&["127.0.0.255", "127.0.1.0"]))));
        assert_eq!(parse("::1-::2"), Ok(Sources::These(ips(&["::1", "::2"]))));
        assert_eq!(parse("none"), Ok(Sources::None));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert!(parse("127.0.0.300").unwrap_err().contains("`127.0.0.300` is not an IP address"));
        assert!(parse("127.0.0.9-127.0.0.2").unwrap_err().contains("ends before it starts"));
        assert!(parse("127.0.0.1-::1").unwrap_err().contains("mixes IPv4 and IPv6"));
        assert!(parse("127.0.0.1,").unwrap_err().contains("empty item"));
        assert!(parse("127.0.0.1,127.0.0.1").unwrap_err().contains("given twice"));
        assert!(parse("10.0.0.0-10.255.255.255").unwrap_err().contains("more than"));
        assert!(parse("0.0.0.0").unwrap_err().contains("cannot be"));
    }

    #[test]
    fn loopback_gets_an_address_per_twenty_thousand_streams() {
        assert_eq!(choose(None, true, 10), ips(&["127.0.0.1"]));
        assert_eq!(
            choose(None, true, 100_000),
            ips(&["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
        );
        assert_eq!(choose(None, true, 100_001).len(), 6);
        assert_eq!(choose(None, false, 100_000), Vec::<IpAddr>::new());
        assert_eq!(choose(Some(&Sources::None), true, 100_000), Vec::<IpAddr>::new());
        let given = Sources::These(ips(&["127.0.0.9"]));
        assert_eq!(choose(Some(&given), false, 100_000), ips(&["127.0.0.9"]));
    }

    #[test]
    fn loopback_urls() {
        let loopback = |url: &str| is_loopback(&reqwest::Url::parse(url).unwrap());
        assert!(loopback("http://127.0.0.1:8080"));
        assert!(loopback("http://127.1.2.3"));
        assert!(loopback("http://LocalHost:80/x"));
        assert!(!loopback("http://10.0.0.1"));
        assert!(!loopback("http://[::1]:80"));
        assert!(!loopback("http://example.com"));
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe(&ips(&["127.0.0.1", "127.0.0.2", "127.0.0.3"])), "127.0.0.1-127.0.0.3");
        assert_eq!(describe(&ips(&["127.0.0.2", "127.0.0.3"])), "127.0.0.2,127.0.0.3");
        assert_eq!(describe(&ips(&["127.0.0.2", "127.0.0.5", "127.0.0.6"])), "127.0.0.2,127.0.0.5,127.0.0.6");
        assert_eq!(describe(&[]), "");
    }
}
