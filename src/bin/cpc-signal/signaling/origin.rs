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
            .map(origin)
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

/// One origin of `ORIGINS` as browsers send it: scheme and host in lower
/// case, a scheme's default port left out (browsers drop `:443` from an
/// https origin, so `https://app.example:443` listed as written refused
/// every page of it).
fn origin(listed: &str) -> Result<String, String> {
    let bare = listed.trim_end_matches('/').to_ascii_lowercase();
    let not_one = |why: &str| {
        Err(format!(
            "ORIGINS: {listed:?} is not an origin like https://app.example (scheme and \
             host, no path){why}; or * for every site"
        ))
    };
    let (scheme, default_port) = if bare.starts_with("https://") {
        ("https://", ":443")
    } else if bare.starts_with("http://") {
        ("http://", ":80")
    } else {
        return not_one("");
    };
    let host = &bare[scheme.len()..];
    if host.is_empty() || host.contains('/') {
        return not_one("");
    }
    if host.contains('*') {
        return not_one(": a pattern matches no page, list each origin");
    }
    let host = host.strip_suffix(default_port).unwrap_or(host);
    Ok(format!("{scheme}{host}"))
}

impl std::fmt::Display for Origins {
    /// As the start-up line says it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origins::Own => f.write_str("this server's own (reached by an address or localhost)"),
            Origins::Any => f.write_str("every site's (ORIGINS=*)"),
            Origins::Listed(list) => write!(f, "this server's own and {}", list.join(", ")),
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

    /// Browsers drop a scheme's default port and send scheme and host in
    /// lower case: a listed origin is taken as they send it; a pattern is
    /// refused at start, where it matched no page.
    #[test]
    fn listed_origins_are_taken_as_browsers_send_them() {
        let listed = Origins::parse(Some(
            "HTTPS://App.Example:443, http://b.example:80/, https://c.example:8443",
        ))
        .unwrap();
        assert_eq!(
            listed,
            Origins::Listed(vec![
                "https://app.example".into(),
                "http://b.example".into(),
                "https://c.example:8443".into(),
            ])
        );
        assert!(listed.allows(Some("https://app.example"), Some("signal.example")));
        let pattern = Origins::parse(Some("https://*.app.example")).unwrap_err();
        assert!(pattern.contains("a pattern matches no page"), "{pattern}");
        assert!(Origins::parse(Some("ftp://x.example")).is_err());
        assert!(Origins::parse(Some("https://")).is_err());
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
