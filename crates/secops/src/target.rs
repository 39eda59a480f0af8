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
        if let Ok(ip) = lower.parse::<IpAddr>()
            && is_private(ip)
        {
            return Err(private(&target.host));
        }
    }
    Ok(target)
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
        let ok = check("https://hooks.example.com:8443/in", false).unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("hooks.example.com", 8443));
        assert_eq!(check("http://93.184.216.34/", false).unwrap().port, 80);
    }
}
