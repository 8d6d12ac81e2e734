//! Which pages may open `/signal`. A browser sends the page's origin with
//! every WebSocket upgrade and lets any site open a socket to any server,
//! so without this check any website a visitor opens could join rooms of a
//! local or LAN server, list their members and flood them.

/// The origins allowed, from `ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Unset: only the server's own pages (origin `http(s)://<Host>`).
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
        let own = host.is_some_and(|host| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_only_the_own_origin_passes() {
        let own = Origins::parse(None).unwrap();
        let host = Some("127.0.0.1:8080");
        assert!(own.allows(Some("http://127.0.0.1:8080"), host));
        assert!(own.allows(Some("https://127.0.0.1:8080"), host));
        assert!(own.allows(Some("HTTP://Signal.Example"), Some("signal.example")));
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
        assert!(listed.allows(Some("https://signal.example"), host));
        assert!(!listed.allows(Some("https://c.example"), host));
        assert!(!listed.allows(Some("http://a.example"), host));
        let any = Origins::parse(Some("*")).unwrap();
        assert!(any.allows(Some("https://evil.example"), host));
        assert!(Origins::parse(Some("a.example")).is_err());
        assert!(Origins::parse(Some("https://a.example/app")).is_err());
    }
}
