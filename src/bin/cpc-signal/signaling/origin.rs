//! Which pages may open `/signal`. A browser sends the page's origin with
//! every WebSocket upgrade and lets any site open a socket to any server,
//! so without this check any website a visitor opens could join rooms of a
//! local or LAN server, list their members and flood them.
//!
//! A page counts as the server's own (`http(s)://<Host>`) only where the
//! `Host` is an address or `localhost`: a site may point its own name at
//! 127.0.0.1 or a LAN address (DNS rebinding), and its pages then come
//! with that name as both `Host` and origin. A server reached by a name
//! lists that origin in `ORIGINS`.

/// The origins allowed, from `ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Unset: only the server's own pages (origin `http(s)://<Host>`, the
    /// `Host` an address or `localhost`).
    Own,
    /// `ORIGINS=https://a.example,https://b.example`: those, and our own.
    Listed(Vec<String>),
    /// `ORIGINS=*`: every page of every site.
    Any,
}

impl Origins {
    /// Reads the value of `ORIGINS`.
    pub fn parse(value: Option<&str>) -> Result<Origins, String> {
        let value = value.map(str::trim).unwrap_or("");
        if value.is_empty() {
            return Ok(Origins::Own);
        }
        if value == "*" {
            return Ok(Origins::Any);
        }
        value
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| {
                let bare = o.trim_end_matches('/');
                let rest = bare
                    .strip_prefix("http://")
                    .or_else(|| bare.strip_prefix("https://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.contains('/') => {
                        Ok(bare.to_ascii_lowercase())
                    }
                    _ => Err(format!(
                        "ORIGINS: {o:?} is not an origin like https://app.example \
                         (scheme and host, no path), nor *"
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Origins::Listed)
    }

    /// Whether a socket upgrade with this `Origin` header, sent to this
    /// `Host`, may proceed. No `Origin` is allowed: browsers always send
    /// one, so its absence means a client that is not a web page (and a
    /// page cannot suppress it).
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let own = host.filter(|host| is_address(host)).is_some_and(|host| {
            [("http://", host), ("https://", host)]
                .iter()
                .any(|(scheme, host)| {
                    origin.len() == scheme.len() + host.len()
                        && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                        && origin[scheme.len()..].eq_ignore_ascii_case(host)
                })
        });
        match self {
            Origins::Any => true,
            Origins::Own => own,
            Origins::Listed(list) => own || list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// Whether a `Host` names this machine by an address, or as `localhost`
/// (which browsers resolve to the loopback themselves): no one else's DNS
/// can point a name of theirs there.
fn is_address(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 address, with or without a port.
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_only_the_own_origin_passes() {
        let own = Origins::parse(None).unwrap();
        let host = Some("127.0.0.1:8080");
        assert!(own.allows(Some("http://127.0.0.1:8080"), host));
        assert!(own.allows(Some("https://127.0.0.1:8080"), host));
        assert!(own.allows(Some("http://LOCALHOST:8080"), Some("localhost:8080")));
        assert!(own.allows(Some("http://[::1]:8080"), Some("[::1]:8080")));
        // A name: any site may point its own at this server (DNS
        // rebinding), so it is listed in ORIGINS or refused.
        assert!(!own.allows(Some("HTTP://Signal.Example"), Some("signal.example")));
        assert!(!own.allows(Some("http://evil.example:8080"), Some("evil.example:8080")));
        assert!(own.allows(None, host), "not a browser");
        assert!(!own.allows(Some("https://evil.example"), host));
        assert!(!own.allows(Some("http://127.0.0.1:8081"), host));
        assert!(!own.allows(Some("http://127.0.0.1:80800"), host));
        assert!(!own.allows(Some("null"), host));
        assert!(!own.allows(Some("http://127.0.0.1:8080"), None));
    }

    #[test]
    fn a_list_adds_origins_and_a_star_allows_all() {
        let listed = Origins::parse(Some("https://a.example, https://B.example/")).unwrap();
        assert_eq!(
            listed,
            Origins::Listed(vec!["https://a.example".into(), "https://b.example".into()])
        );
        let host = Some("signal.example");
        assert!(listed.allows(Some("https://b.example"), host));
        assert!(
            !listed.allows(Some("https://signal.example"), host),
            "a name, unlisted"
        );
        assert!(listed.allows(Some("https://a.example"), Some("a.example")));
        assert!(!listed.allows(Some("https://c.example"), host));
        assert!(!listed.allows(Some("http://a.example"), host));
        let any = Origins::parse(Some("*")).unwrap();
        assert!(any.allows(Some("https://evil.example"), host));
        assert!(Origins::parse(Some("a.example")).is_err());
        assert!(Origins::parse(Some("https://a.example/app")).is_err());
    }
}
