//! Fetching media a client gave as a URL, for providers that need the bytes, without letting a
//! client make this server reach what only it can reach (SSRF).
//!
//! Only `http` and `https`; the host is resolved here and **every** address it resolves to
//! must be public (no loopback, private, link-local — the cloud metadata address included —
//! shared, unspecified, multicast or documentation ranges, in IPv4 or IPv6, IPv4-mapped
//! included) unless the operator's allow-list names it. The connection goes to the address
//! that was checked (no second lookup an attacker's DNS could answer differently), redirects
//! are followed by hand and checked the same way, the body is capped in size and time, and its
//! first bytes must be the kind of media the part claims.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use switchboard_model::{Error, ErrorKind, RequestField};

/// What the operator allows.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Addresses (`10.0.0.0/8`, `127.0.0.1/32`, `::1/128`) fetches may reach although they are
    /// not public.
    pub allow: Vec<(IpAddr, u8)>,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(15),
            max_redirects: 5,
        }
    }
}

/// Bytes fetched, with the media type their first bytes show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Parses `10.0.0.0/8`-style entries (a bare address is a single host).
///
/// # Errors
/// An entry that is not an address with an optional prefix length.
pub fn parse_allow(entries: &[String]) -> Result<Vec<(IpAddr, u8)>, String> {
    entries
        .iter()
        .map(|entry| {
            let (address, bits) = entry.split_once('/').unwrap_or((entry, ""));
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("'{entry}' is not an IP address or CIDR block"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let bits = if bits.is_empty() {
                max
            } else {
                bits.parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("'{entry}' has a bad prefix length"))?
            };
            Ok((address, bits))
        })
        .collect()
}

fn refused(message: impl Into<String>) -> Error {
    Error::invalid_at(RequestField::Conversation, message)
}

/// Fetches `url` under `policy`; `expected` is the kind of media the part claims (`image`,
/// `application/pdf`, `audio`), which the bytes must be.
///
/// # Errors
/// A 400 naming why: a scheme or address that is not allowed, a redirect to one, a failed or
/// slow fetch, a body over the size limit, bytes of another kind.
pub async fn fetch(url: &str, expected: &str, policy: &FetchPolicy) -> Result<Fetched, Error> {
    let (bytes, _) = download(url, policy).await?;
    let media_type = sniff(&bytes).ok_or_else(|| {
        refused("The media URL's content is not an image, a PDF or audio this server knows.")
    })?;
    if !media_type.starts_with(expected) {
        return Err(refused(format!(
            "The media URL holds {media_type}, not the {expected} the part says it is."
        )));
    }
    Ok(Fetched { media_type, bytes })
}

/// The body of `url` and its `Content-Type`, fetched under `policy` with the SSRF checks
/// above (every hop's addresses checked, the checked address connected to, size and time
/// capped), for any kind of content.
///
/// # Errors
/// As [`fetch`], but for the kind of content.
pub async fn download(url: &str, policy: &FetchPolicy) -> Result<(Vec<u8>, Option<String>), Error> {
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let mut current = reqwest::Url::parse(url).map_err(|_| {
        refused(format!(
            "The media URL '{}' is not a valid URL.",
            shorten(url)
        ))
    })?;
    for _ in 0..=policy.max_redirects {
        let address = checked_address(&current, policy).await?;
        let host = current.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, address)
            .timeout(policy.timeout)
            .build()
            .map_err(|err| Error::internal(format!("HTTP client: {err}")))?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let response = tokio::time::timeout(remaining, client.get(current.clone()).send())
            .await
            .map_err(|_| refused("Fetching the media URL took too long."))?
            .map_err(|_| refused("The media URL could not be fetched."))?;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| refused("The media URL redirected without a location."))?;
            current = current
                .join(location)
                .map_err(|_| refused("The media URL redirected to an invalid URL."))?;
            continue;
        }
        if !response.status().is_success() {
            return Err(refused(format!(
                "Fetching the media URL failed with status {}.",
                response.status().as_u16()
            )));
        }
        if response
            .content_length()
            .is_some_and(|length| length > policy.max_bytes as u64)
        {
            return Err(too_large(policy));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        let mut body = response.bytes_stream();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, body.next()).await {
                Err(_) => return Err(refused("Fetching the media URL took too long.")),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(refused("The media URL could not be fetched.")),
                Ok(Some(Ok(chunk))) => {
                    if bytes.len() + chunk.len() > policy.max_bytes {
                        return Err(too_large(policy));
                    }
                    bytes.extend_from_slice(&chunk);
                }
            }
        }
        return Ok((bytes, content_type));
    }
    Err(refused("The media URL redirected too many times."))
}

fn too_large(policy: &FetchPolicy) -> Error {
    Error::new(
        ErrorKind::InvalidRequest,
        format!(
            "The media URL's content is larger than {} bytes.",
            policy.max_bytes
        ),
    )
    .with_field(RequestField::Conversation)
}

fn shorten(url: &str) -> String {
    url.chars().take(100).collect()
}

/// The one address the fetch will connect to, after every address of the host was checked.
async fn checked_address(url: &reqwest::Url, policy: &FetchPolicy) -> Result<SocketAddr, Error> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused(format!(
            "Media URLs must be http or https, not '{}'.",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| refused("The media URL has no host."))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| refused(format!("The media URL's host '{host}' does not resolve.")))?
        .collect();
    let Some(first) = addresses.first().copied() else {
        return Err(refused(format!(
            "The media URL's host '{host}' does not resolve."
        )));
    };
    for address in &addresses {
        if !allowed(address.ip(), policy) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "The media URL's host '{host}' is a private or reserved address, which this \
                     server does not fetch."
                ),
            )
            .with_field(RequestField::Conversation)
            .with_code("media_url_blocked"));
        }
    }
    Ok(first)
}

fn allowed(ip: IpAddr, policy: &FetchPolicy) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    is_public(ip)
        || policy
            .allow
            .iter()
            .any(|(net, bits)| contains(*net, *bits, ip))
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// The media type the first bytes show, for the kinds parts carry.
#[must_use]
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WAVE" {
        Some("audio/wav")
    } else if starts(b"%PDF-") {
        Some("application/pdf")
    } else if starts(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0) {
        Some("audio/mp3")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n0000";

    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route(
                "/img.png",
                get(|| async { ([(header::CONTENT_TYPE, "image/png")], PNG) }),
            )
            .route("/text", get(|| async { "just text" }))
            .route("/big", get(|| async { vec![0u8; 4096] }))
            .route(
                "/to-other-loopback",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(header::LOCATION, "http://127.0.0.2:9/img.png")],
                    )
                        .into_response()
                }),
            )
            .route(
                "/to-self",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(header::LOCATION, "/img.png")],
                    )
                        .into_response()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    fn loopback_allowed() -> FetchPolicy {
        FetchPolicy {
            allow: parse_allow(&["127.0.0.1".into()]).unwrap(),
            max_bytes: 1024,
            ..FetchPolicy::default()
        }
    }

    #[tokio::test]
    async fn private_and_reserved_addresses_are_blocked() {
        let policy = FetchPolicy::default();
        for url in [
            "http://127.0.0.1/x.png",
            "http://localhost/x.png",
            "http://10.1.2.3/x.png",
            "http://172.16.0.1/x.png",
            "http://192.168.1.1/x.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/x.png",
            "http://0.0.0.0/x.png",
            "http://[::1]/x.png",
            "http://[fd00::1]/x.png",
            "http://[fe80::1]/x.png",
            "http://[::ffff:127.0.0.1]/x.png",
        ] {
            let error = fetch(url, "image", &policy).await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidRequest, "{url}");
            assert_eq!(
                error.code.as_deref(),
                Some("media_url_blocked"),
                "{url}: {}",
                error.message
            );
        }
        let error = fetch("file:///etc/passwd", "image", &policy)
            .await
            .unwrap_err();
        assert!(error.message.contains("http or https"), "{}", error.message);
    }

    #[tokio::test]
    async fn allowed_fetches_are_checked_on_every_hop_size_and_content() {
        let address = serve().await;
        let policy = loopback_allowed();
        let base = format!("http://{address}");
        let fetched = fetch(&format!("{base}/img.png"), "image", &policy)
            .await
            .unwrap();
        assert_eq!(fetched.media_type, "image/png");
        assert_eq!(fetched.bytes, PNG);
        // A redirect is followed, and checked like the first hop.
        assert!(fetch(&format!("{base}/to-self"), "image", &policy)
            .await
            .is_ok());
        let error = fetch(&format!("{base}/to-other-loopback"), "image", &policy)
            .await
            .unwrap_err();
        assert_eq!(
            error.code.as_deref(),
            Some("media_url_blocked"),
            "{}",
            error.message
        );
        let error = fetch(&format!("{base}/big"), "image", &policy)
            .await
            .unwrap_err();
        assert!(
            error.message.contains("larger than 1024"),
            "{}",
            error.message
        );
        let error = fetch(&format!("{base}/text"), "image", &policy)
            .await
            .unwrap_err();
        assert!(error.message.contains("not an image"), "{}", error.message);
        let error = fetch(&format!("{base}/img.png"), "application/pdf", &policy)
            .await
            .unwrap_err();
        assert!(error.message.contains("image/png"), "{}", error.message);
    }

    #[test]
    fn allow_lists_parse_and_match() {
        let allow = parse_allow(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let policy = FetchPolicy {
            allow,
            ..FetchPolicy::default()
        };
        assert!(allowed("10.9.8.7".parse().unwrap(), &policy));
        assert!(!allowed("192.168.0.1".parse().unwrap(), &policy));
        assert!(allowed("::1".parse().unwrap(), &policy));
        assert!(allowed("93.184.216.34".parse().unwrap(), &policy));
        assert!(parse_allow(&["10.0.0.0/40".into()]).is_err());
        assert!(parse_allow(&["nonsense".into()]).is_err());
    }
}
