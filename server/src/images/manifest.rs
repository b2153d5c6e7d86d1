//! An image's size before it is pulled, for the disk preflight: the leader asks the image's
//! registry for its manifest (Docker's registry API v2 / OCI distribution) and adds up the
//! config and layer sizes it lists. Those are compressed sizes; [`super::disk`] counts a pull
//! as needing twice that (the unpacked layers), plus the margin.
//!
//! Authentication is what Docker's own client does: a `401` with `Basic` is answered with the
//! registry's stored credentials, a `401` with `Bearer realm=…,service=…,scope=…` by fetching a
//! token from the realm (with the credentials, when there are some). A registry that answers
//! only plain HTTP (the usual one on a local network) is asked over HTTP after HTTPS fails;
//! credentials go over plain HTTP only to a loopback host (the registry's, or its token
//! service's). Answers are read up to 4 MiB. Sizes are kept for 5 minutes per image and CPU, so
//! a deployment retrying its pull does not ask the registry each time (Docker Hub counts
//! manifest requests as pulls). Anything that goes wrong yields an
//! error the caller reports as "size unknown": the check then counts only the margin.

use std::time::Duration;

use reqwest::{Client, StatusCode, header};
use serde::Deserialize;

/// How long the whole question may take.
pub const LIMIT: Duration = Duration::from_secs(10);
/// Manifests are small; a bigger answer is not one.
const MAX_MANIFEST: usize = 4 << 20;

const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.index.v1+json";

/// An image reference split as the registry API wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The host the API is on (`registry-1.docker.io` for Docker Hub).
    pub host: String,
    /// The repository: `library/busybox`, `org/app`.
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
}

/// Splits `image` (`[host/]path[:tag][@digest]`); `None` when it is not an image name.
pub fn parse(image: &str) -> Option<Reference> {
    let server = super::registry::registry_of(image);
    let rest = if server == super::registry::DOCKER_HUB && !image.starts_with("docker.io/") {
        image
    } else {
        image.split_once('/').map(|(_, r)| r)?
    };
    let (path, reference) = match rest.split_once('@') {
        Some((p, digest)) => (p.rsplit_once(':').map_or(p, |(n, _)| n), digest.to_owned()),
        None => match rest.rsplit_once(':') {
            // A `:` after the last `/` is a tag's.
            Some((p, tag)) if !tag.contains('/') => (p, tag.to_owned()),
            _ => (rest, "latest".to_owned()),
        },
    };
    if path.is_empty() || reference.is_empty() {
        return None;
    }
    let (host, repository) = if server == super::registry::DOCKER_HUB {
        let repository = if path.contains('/') {
            path.to_owned()
        } else {
            format!("library/{path}")
        };
        ("registry-1.docker.io".to_owned(), repository)
    } else {
        (server.to_owned(), path.to_owned())
    };
    Some(Reference {
        host,
        repository,
        reference,
    })
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default)]
    size: u64,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// A list or index: one manifest per platform.
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// How long a size (or the reason there is none) is kept.
const KEEP: Duration = Duration::from_secs(300);

type Known = std::collections::HashMap<(String, String), (std::time::Instant, u64)>;

/// Sizes asked lately, by image and CPU.
static KNOWN: std::sync::Mutex<Option<Known>> = std::sync::Mutex::new(None);

/// The compressed size of `image` for a node of Docker architecture `arch` (`arm64`, `amd64`;
/// with a variant for 32-bit ARM, `arm/v7`), asked of its registry with `credentials`, or as
/// found within the last [`KEEP`] (only sizes are kept: a refusal may be mended at once, by
/// credentials given).
pub async fn compressed_size(
    image: &str,
    arch: Option<&str>,
    credentials: Option<(String, String)>,
) -> Result<u64, String> {
    let key = (image.to_owned(), arch.unwrap_or_default().to_owned());
    let kept = KNOWN.lock().ok().and_then(|k| {
        k.as_ref()?
            .get(&key)
            .filter(|(at, _)| at.elapsed() < KEEP)
            .map(|(_, size)| *size)
    });
    if let Some(size) = kept {
        return Ok(size);
    }
    let size = ask(image, arch, credentials).await?;
    if let Ok(mut known) = KNOWN.lock() {
        let known = known.get_or_insert_with(Default::default);
        known.retain(|_, (at, _)| at.elapsed() < KEEP);
        known.insert(key, (std::time::Instant::now(), size));
    }
    Ok(size)
}

async fn ask(
    image: &str,
    arch: Option<&str>,
    credentials: Option<(String, String)>,
) -> Result<u64, String> {
    let r = parse(image).ok_or_else(|| format!("{image:?} is not an image name"))?;
    let client = Client::builder()
        .timeout(LIMIT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| e.to_string())?;
    let ask = Asker {
        client,
        credentials,
        loopback: is_loopback(&r.host),
    };
    let work = async {
        let (base, first) = ask.first(&r).await?;
        let manifest = match first.manifests.is_empty() {
            true => first,
            false => {
                let (want_arch, want_variant) = match arch {
                    Some(a) => match a.split_once('/') {
                        Some((a, v)) => (a, Some(v)),
                        None => (a, None),
                    },
                    None => ("amd64", None),
                };
                let pick = first
                    .manifests
                    .iter()
                    .find(|m| {
                        m.platform.as_ref().is_some_and(|p| {
                            p.os == "linux"
                                && p.architecture == want_arch
                                && (want_variant.is_none() || p.variant.as_deref() == want_variant)
                        })
                    })
                    .ok_or_else(|| format!("{image} has no manifest for linux/{want_arch}"))?;
                let url = format!("{base}/v2/{}/manifests/{}", r.repository, pick.digest);
                ask.get(&url, &r).await?.1
            }
        };
        if manifest.layers.is_empty() {
            return Err(format!("{image}'s manifest lists no layers"));
        }
        let layers: u64 = manifest.layers.iter().map(|l| l.size).sum();
        Ok(layers + manifest.config.map_or(0, |c| c.size))
    };
    match tokio::time::timeout(LIMIT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{} did not answer in time", r.host)),
    }
}

fn is_loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(']') || h.starts_with('['))
        .map_or(host, |(h, _)| h);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

struct Asker {
    client: Client,
    credentials: Option<(String, String)>,
    loopback: bool,
}

impl Asker {
    /// The manifest of `r`, over HTTPS or else plain HTTP; the base URL that answered.
    async fn first(&self, r: &Reference) -> Result<(String, Manifest), String> {
        let https = format!("https://{}", r.host);
        let url = format!("{https}/v2/{}/manifests/{}", r.repository, r.reference);
        match self.get(&url, r).await {
            Ok((_, m)) => Ok((https, m)),
            Err(e) if e.starts_with("connect:") => {
                let http = format!("http://{}", r.host);
                let url = format!("{http}/v2/{}/manifests/{}", r.repository, r.reference);
                let (_, m) = self.get(&url, r).await?;
                Ok((http, m))
            }
            Err(e) => Err(e),
        }
    }

    /// GETs a manifest, answering one authentication challenge.
    async fn get(&self, url: &str, r: &Reference) -> Result<(StatusCode, Manifest), String> {
        let plain = url.starts_with("http://");
        // Credentials over plain HTTP only to this machine.
        let creds = self
            .credentials
            .as_ref()
            .filter(|_| !plain || self.loopback);
        let send = |auth: Option<String>| {
            let mut req = self.client.get(url).header(header::ACCEPT, ACCEPT);
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            req.send()
        };
        let mut resp = send(None).await.map_err(describe)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let auth = if challenge.to_ascii_lowercase().starts_with("bearer") {
                let token = self.token(&challenge, r, creds).await?;
                format!("Bearer {token}")
            } else {
                let (user, pass) = creds.ok_or("the registry wants credentials")?;
                basic(user, pass)
            };
            resp = send(Some(auth)).await.map_err(describe)?;
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("the registry answered {status}"));
        }
        let body = bounded(resp, "the manifest").await?;
        let manifest = serde_json::from_slice(&body).map_err(|e| format!("the manifest: {e}"))?;
        Ok((status, manifest))
    }

    /// A bearer token from the challenge's realm.
    async fn token(
        &self,
        challenge: &str,
        r: &Reference,
        creds: Option<&(String, String)>,
    ) -> Result<String, String> {
        let params = challenge_params(challenge);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or("a bearer challenge without a realm")?;
        let mut query: Vec<(String, String)> = params
            .into_iter()
            .filter(|(k, _)| k == "service" || k == "scope")
            .collect();
        if !query.iter().any(|(k, _)| k == "scope") {
            query.push(("scope".into(), format!("repository:{}:pull", r.repository)));
        }
        let mut req = self.client.get(&realm).query(&query);
        // The realm may be elsewhere: credentials over plain HTTP only to a realm on this
        // machine.
        let realm_ok = match realm.strip_prefix("http://") {
            Some(rest) => is_loopback(rest.split(['/', '?']).next().unwrap_or_default()),
            None => true,
        };
        if let Some((user, pass)) = creds.filter(|_| realm_ok) {
            req = req.header(header::AUTHORIZATION, basic(user, pass));
        }
        let resp = req.send().await.map_err(describe)?;
        if !resp.status().is_success() {
            return Err(format!("the token service answered {}", resp.status()));
        }
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = bounded(resp, "the token").await?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| format!("the token: {e}"))?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| "the token service gave no token".into())
    }
}

/// A response's body, refused past [`MAX_MANIFEST`] bytes (read a piece at a time: a server
/// that sends for ever cannot fill the leader's memory).
async fn bounded(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, String> {
    if resp
        .content_length()
        .is_some_and(|l| l > MAX_MANIFEST as u64)
    {
        return Err(format!("{what} is too big"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_MANIFEST {
            return Err(format!("{what} is too big"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// `Bearer realm="https://auth",service="reg",scope="repository:x:pull"` as pairs.
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge
        .split_once(' ')
        .map_or("", |(_, rest)| rest)
        .trim();
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        escaped = false;
                        value.push(c);
                    }
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

/// A transport error as a short reason; a failure to connect (or to speak TLS) starts with
/// `connect:` so HTTP can be tried after it.
fn describe(e: reqwest::Error) -> String {
    if e.is_connect() || (e.is_request() && !e.is_timeout()) {
        format!("connect: {e}")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, repository: &str, reference: &str) -> Option<Reference> {
        Some(Reference {
            host: host.into(),
            repository: repository.into(),
            reference: reference.into(),
        })
    }

    #[test]
    fn references_split_as_the_registry_api_wants_them() {
        assert_eq!(
            parse("busybox"),
            r("registry-1.docker.io", "library/busybox", "latest")
        );
        assert_eq!(
            parse("busybox:1.36"),
            r("registry-1.docker.io", "library/busybox", "1.36")
        );
        assert_eq!(
            parse("docker.io/org/app:2"),
            r("registry-1.docker.io", "org/app", "2")
        );
        assert_eq!(
            parse("127.0.0.1:5000/trellis-test/bb:x1"),
            r("127.0.0.1:5000", "trellis-test/bb", "x1")
        );
        assert_eq!(
            parse("registry.local:5000/cam"),
            r("registry.local:5000", "cam", "latest")
        );
        assert_eq!(
            parse("ghcr.io/o/a:1@sha256:abc"),
            r("ghcr.io", "o/a", "sha256:abc")
        );
        assert_eq!(parse("registry.local:5000/"), None);
    }

    #[test]
    fn challenges_read_as_docker_reads_them() {
        let p = challenge_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/busybox:pull".into()),
            ]
        );
        assert_eq!(
            challenge_params("Basic realm=Registry"),
            vec![("realm".into(), "Registry".into())]
        );
        assert!(challenge_params("Bearer").is_empty());
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.local:5000"));
        assert!(!is_loopback("192.168.1.4:5000"));
    }
}
