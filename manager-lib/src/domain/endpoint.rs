//! Node endpoints: the one canonical spelling of an agent's URL, and the
//! host in it (what clients dial when the operator sets no address).

use super::{MAX_ENDPOINT_BYTES, ParseError};

/// Checks a node endpoint and gives its one canonical spelling (scheme and
/// host lower-cased, no trailing slash), so the same node cannot be registered
/// twice under two spellings.
pub fn normalize_endpoint(raw: &str) -> Result<String, ParseError> {
    let err = || ParseError {
        what: "endpoint",
        value: raw.chars().take(128).collect(),
    };
    if raw.len() > MAX_ENDPOINT_BYTES {
        return Err(err());
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| err())?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !ok {
        return Err(err());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The host of a node endpoint (IPv6 without brackets); the whole text for
/// one that is not a URL.
pub fn endpoint_host(endpoint: &str) -> String {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
        .unwrap_or_else(|| endpoint.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_normalized() {
        assert_eq!(
            normalize_endpoint("HTTP://10.0.0.1:8080/").unwrap(),
            "http://10.0.0.1:8080"
        );
        assert_eq!(
            normalize_endpoint("https://node.example.com").unwrap(),
            "https://node.example.com"
        );
        assert_eq!(
            normalize_endpoint("http://[::1]:9000").unwrap(),
            "http://[::1]:9000"
        );
        for bad in [
            "",
            "node:8080",
            "ftp://x",
            "http://",
            "http://:80",
            "http://a b",
            "http://u:p@host",
            "http://host:99999",
            "http://host?x=1",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_host_is_the_endpoints_without_brackets() {
        assert_eq!(endpoint_host("http://10.0.0.1:8080"), "10.0.0.1");
        assert_eq!(
            endpoint_host("https://node.example.com"),
            "node.example.com"
        );
        assert_eq!(endpoint_host("http://[2001:db8::1]:9000"), "2001:db8::1");
        assert_eq!(endpoint_host("not a url"), "not a url");
    }
}
