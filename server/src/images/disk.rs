//! The disk preflight: before an image is loaded into a node (a sideload), pulled there, or
//! built there, the node's free space (as its agent last reported it for the Docker data root)
//! must hold what comes plus a margin: a sideload's image size, a pull's compressed layers (from
//! the registry's manifest, [`super::manifest`]) times [`UNPACKED`], a build's context. balena's
//! most common field failure is a disk filled by an update; this refuses it with the node, the
//! space needed and the space free.

use entity::node;

/// How much bigger an image is unpacked than its compressed layers, as the pull check counts
/// it (gzip of binaries and libraries is commonly 2 to 3 times; the margin covers the rest).
pub const UNPACKED: u64 = 2;

/// Bytes as people read them: `512 MiB`, `1.2 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Room enough.
    Fits,
    /// The node has not said how much room it has (no agent, or an agent from before disk
    /// reports): the load goes ahead, and the transfer says so.
    Unknown,
}

/// Checks that `node` has room for an image of `size` bytes plus `margin`; the error names the
/// node, what is needed and what is free.
pub fn check(node: &node::Model, what: &str, size: u64, margin: u64) -> Result<Verdict, String> {
    check_as(node, what, "image", size, margin)
}

/// [`check`], with `size` named `kind` in the message (`build context`).
pub fn check_as(
    node: &node::Model,
    what: &str,
    kind: &str,
    size: u64,
    margin: u64,
) -> Result<Verdict, String> {
    let Some(free) = node.disk_free_bytes.and_then(|f| u64::try_from(f).ok()) else {
        return Ok(Verdict::Unknown);
    };
    let need = size.saturating_add(margin);
    if free >= need {
        return Ok(Verdict::Fits);
    }
    let path = node.disk_path.as_deref().unwrap_or("its Docker data root");
    Err(format!(
        "not enough disk on node {:?}: {what} needs {} ({} {kind} + {} margin) and {path} has {} free",
        node.id,
        human(need),
        human(size),
        human(margin),
        human(free)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(free: Option<i64>) -> node::Model {
        node::Model {
            id: "pi-1".into(),
            name: None,
            labels: serde_json::json!({}),
            state: "online".into(),
            hostname: "pi".into(),
            mac: None,
            ip_addresses: serde_json::json!([]),
            arch: "aarch64".into(),
            os: "linux".into(),
            model: None,
            agent_version: "0".into(),
            hardware: "simulator".into(),
            heartbeat_interval_secs: 5,
            cpu_percent: None,
            mem_used_bytes: None,
            mem_total_bytes: None,
            temperature_c: None,
            uptime_secs: None,
            first_seen: chrono::Utc::now(),
            last_seen: chrono::Utc::now(),
            docker_endpoint: None,
            docker_insecure: false,
            job_kinds: None,
            clock_offset_ms: None,
            pump_calibrations: None,
            disk_path: Some("/var/lib/docker".into()),
            disk_free_bytes: free,
            disk_total_bytes: Some(32 << 30),
        }
    }

    #[test]
    fn an_image_that_would_fill_the_disk_is_refused_with_need_and_free() {
        let e = check(&node(Some(300 << 20)), "image app:2", 700 << 20, 512 << 20).unwrap_err();
        assert_eq!(
            e,
            "not enough disk on node \"pi-1\": image app:2 needs 1.2 GiB (700 MiB image + 512 MiB \
             margin) and /var/lib/docker has 300 MiB free"
        );
        assert_eq!(
            check(&node(Some(2 << 30)), "image app:2", 700 << 20, 512 << 20),
            Ok(Verdict::Fits)
        );
        // Exactly enough is enough.
        assert_eq!(
            check(&node(Some(1212 << 20)), "x", 700 << 20, 512 << 20),
            Ok(Verdict::Fits)
        );
        assert_eq!(check(&node(None), "x", 1, 1), Ok(Verdict::Unknown));
        // A negative figure (a bad report) is no figure.
        assert_eq!(check(&node(Some(-5)), "x", 1, 1), Ok(Verdict::Unknown));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(700 << 20), "700 MiB");
        assert_eq!(human(u64::MAX), "16777216 TiB");
    }
}
