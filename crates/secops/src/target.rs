//! Where a webhook may deliver: `http`/`https` URLs whose host is not on loopback, private,
//! link-local, unique-local or shared (CGNAT) ranges — unless the server allows private
//! targets. The literal host is checked when the webhook is saved, and every resolved
//! address before each delivery (a name that later resolves inward is refused then).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A checked webhook URL: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
}

/// Parses `url` and refuses what is not a deliverable target.
pub(crate) fn check(url: &str, allow_private: bool) -> Result<Target, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    let port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err("a webhook URL starts with http:// or https://".into()),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "a webhook URL names a host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("a webhook URL carries no user or password".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err("a webhook URL names a host".into());
    }
    let target = Target {
        host: host.to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(port),
    };
    if !allow_private {
        let lower = target.host.trim_end_matches('.');
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Err(private(&target.host));
        }
        let literal = lower
            .parse::<IpAddr>()
            .ok()
            .or_else(|| legacy_ipv4(lower).map(IpAddr::V4));
        if literal.is_some_and(is_private) {
            return Err(private(&target.host));
        }
    }
    Ok(target)
}

/// The IPv4 address a host written in a legacy numeric form names, read as the system's
/// resolver (`inet_aton`) reads it when delivering: one to four parts, each decimal, octal (a
/// leading `0`) or hexadecimal (`0x`), the last filling the bytes left. `2130706433`,
/// `0x7f000001`, `0177.0.0.1` and `127.1` are all 127.0.0.1; they are refused when the webhook
/// is saved, as the dotted form is, rather than only at each delivery.
fn legacy_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) = match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            Some(hex) => (hex, 16),
            None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
            None => (*part, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|v| *v > 255) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, v)| acc | v << (24 - 8 * i as u32));
    u32::try_from(high | last).ok().map(Ipv4Addr::from)
}

fn private(host: &str) -> String {
    format!(
        "{host} is a loopback or private address; the server refuses such webhook targets \
         unless [webhooks] allow_private is set"
    )
}

/// Resolves the target and refuses it when any address is inward.
pub(crate) async fn resolve(target: &Target, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let addresses = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("resolving {}: {e}", target.host))?;
    for address in addresses {
        if is_private(address.ip()) {
            return Err(private(&format!("{} ({})", target.host, address.ip())));
        }
    }
    Ok(())
}

pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => private_v6(v6),
        },
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || (a == 100 && (64..128).contains(&b))
        || a == 0
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inward_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1/x",
            "http://localhost:8080/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://0.0.0.0/",
            // Legacy numeric forms the resolver reads as inward addresses.
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://0177.0.0.1/x",
            "https://127.1/x",
            "https://10.1/x",
            "https://012.0.0.1/x",
            "https://0xA9.0xFE.169.254/",
            "https://0/",
        ] {
            assert!(check(bad, false).is_err(), "{bad}");
            assert!(check(bad, true).is_ok(), "{bad} allowed");
        }
        for bad in [
            "ftp://example.com/",
            "example.com",
            "https://u:p@example.com/",
            "",
        ] {
            assert!(check(bad, true).is_err(), "{bad}");
        }
        assert_eq!(legacy_ipv4("2130706433"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(legacy_ipv4("1.2.772"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(
            legacy_ipv4("0x5d.0270.0xd822"),
            Some(Ipv4Addr::new(93, 184, 216, 34))
        );
        for name in [
            "hooks.example.com",
            "1.2.3.4.5",
            "256.1",
            "08",
            "0x",
            "1..2",
            "4294967296",
        ] {
            assert_eq!(legacy_ipv4(name), None, "{name}");
        }
        // A public address in a numeric form is a target like any other.
        assert!(check("https://1572395042/", false).is_ok());
        let ok = check("https://hooks.example.com:8443/in", false).unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("hooks.example.com", 8443));
        assert_eq!(check("http://93.184.216.34/", false).unwrap().port, 80);
    }
}
