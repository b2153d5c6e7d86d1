//! Addresses in configuration and announces: an MQTT broker URL and a Docker endpoint.

/// An MQTT broker address parsed from `mqtt://host:port` (port defaults to 1883) or, over TLS,
/// `mqtts://host:port` (port defaults to 8883).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the broker speaks MQTT over TLS.
    pub tls: bool,
}

impl std::str::FromStr for BrokerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rest, tls) = if let Some(r) = s.strip_prefix("mqtts://") {
            (r, true)
        } else if let Some(r) = s
            .strip_prefix("mqtt://")
            .or_else(|| s.strip_prefix("tcp://"))
        {
            (r, false)
        } else {
            return Err(format!(
                "broker URL {s:?} must start with mqtt:// (or mqtts:// for TLS)"
            ));
        };
        let default_port = if tls { 8883 } else { 1883 };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("broker URL {s:?} has an invalid port {p:?}"))?;
                (h, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("broker URL {s:?} has no usable host"));
        }
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// Where a node's Docker engine listens.
///
/// `tcp://host:port` (port 2376, Docker's TLS port, when left out) is reached with TLS and a
/// client certificate unless an admin marked the node insecure; `unix:///path` names a socket on
/// the node itself, which only the leader's own node can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// A Unix socket on the node: `unix:///var/run/docker.sock`.
    Unix(String),
    /// A TCP address: `tcp://10.0.0.5:2376`.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

impl std::str::FromStr for DockerEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} is not a Docker endpoint: too long, or holds spaces"
            ));
        }
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!(
                    "{s:?}: a unix endpoint needs an absolute socket path, like unix:///var/run/docker.sock"
                ));
            }
            return Ok(DockerEndpoint::Unix(path.to_owned()));
        }
        let rest = s.strip_prefix("tcp://").ok_or_else(|| {
            format!("{s:?} is not a Docker endpoint like tcp://10.0.0.5:2376 or unix:///var/run/docker.sock")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '[' in the address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
        if !host_ok {
            return Err(format!(
                "{s:?}: the host {host:?} is not a name or IP address"
            ));
        }
        let port =
            match port {
                None => 2376,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("{s:?}: the port {p:?} is not a number from 1 to 65535")
                })?,
            };
        Ok(DockerEndpoint::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerEndpoint::Unix(path) => write!(f, "unix://{path}"),
            DockerEndpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            DockerEndpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod broker_addr_tests {
    use super::{BrokerAddr, DockerEndpoint};

    #[test]
    fn parses_docker_endpoints_and_names_what_is_wrong() {
        let ok = |s: &str| s.parse::<DockerEndpoint>().unwrap().to_string();
        assert_eq!(ok("tcp://10.0.0.5:2376"), "tcp://10.0.0.5:2376");
        assert_eq!(ok("tcp://pi-4.lab"), "tcp://pi-4.lab:2376");
        assert_eq!(ok("tcp://[fd00::5]:2375/"), "tcp://[fd00::5]:2375");
        assert_eq!(
            ok("unix:///var/run/docker.sock"),
            "unix:///var/run/docker.sock"
        );
        for (bad, says) in [
            ("http://10.0.0.5:2376", "not a Docker endpoint"),
            ("tcp://10.0.0.5:0", "port"),
            ("tcp://10.0.0.5:99999", "port"),
            ("tcp://:2376", "host"),
            ("tcp://a b:1", "spaces"),
            ("tcp://host/../x:1", "host"),
            ("unix://relative.sock", "absolute"),
        ] {
            let e = bad.parse::<DockerEndpoint>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_broker_urls_and_names_what_is_wrong() {
        let a: BrokerAddr = "mqtt://10.0.0.1:1884".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", 1884));
        let a: BrokerAddr = "mqtt://leader.local".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("leader.local", 1883));
        let a: BrokerAddr = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.to_string().as_str()),
            ("::1", 1999, "mqtt://[::1]:1999")
        );
        let a: BrokerAddr = "mqtts://leader.local".parse().unwrap();
        assert_eq!(
            (a.port, a.tls, a.to_string().as_str()),
            (8883, true, "mqtts://leader.local:8883")
        );
        let a: BrokerAddr = "mqtts://10.0.0.1:1883".parse().unwrap();
        assert_eq!((a.port, a.tls), (1883, true));
        assert!(!"mqtt://x".parse::<BrokerAddr>().unwrap().tls);
        assert!(
            "http://x:1"
                .parse::<BrokerAddr>()
                .unwrap_err()
                .contains("must start with mqtt://")
        );
        assert!(
            "mqtt://x:99999"
                .parse::<BrokerAddr>()
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(
            "mqtt://:1883"
                .parse::<BrokerAddr>()
                .unwrap_err()
                .contains("no usable host")
        );
    }
}
