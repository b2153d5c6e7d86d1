//! Facts about the machine (hostname, MAC, addresses, OS, board) and periodic stats (CPU, memory,
//! temperature, uptime), read straight from `/proc` and `/sys` so the agent stays small on a Pi Zero.

use std::{fs, path::Path};

use trellis_proto::Heartbeat;

/// What the agent announces about its machine.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Hostname.
    pub hostname: String,
    /// MAC of the primary interface.
    pub mac: Option<String>,
    /// Non-loopback addresses.
    pub ip_addresses: Vec<String>,
    /// OS name.
    pub os: String,
    /// Board model.
    pub model: Option<String>,
}

impl Facts {
    /// A node id when none is configured: the MAC without colons (stable across re-imaging and
    /// renames, as Grape keys its inventory), else the hostname made topic-safe.
    pub fn default_node_id(&self) -> String {
        if let Some(mac) = &self.mac {
            return mac.replace(':', "");
        }
        let id: String = self
            .hostname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(trellis_proto::MAX_NODE_ID_LEN)
            .collect();
        if id.is_empty() { "node".into() } else { id }
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned();
    (!s.is_empty()).then_some(s)
}

/// Reads the machine's facts.
pub fn facts() -> Facts {
    let hostname = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into());
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let model = read_trimmed("/proc/device-tree/model")
        .or_else(|| read_trimmed("/sys/firmware/devicetree/base/model"))
        .or_else(|| {
            let vendor = read_trimmed("/sys/class/dmi/id/sys_vendor");
            let product = read_trimmed("/sys/class/dmi/id/product_name")?;
            Some(match vendor {
                Some(v) => format!("{v} {product}"),
                None => product,
            })
        });
    let mut ip_addresses: Vec<String> = if_addrs::get_if_addrs()
        .map(|list| {
            list.into_iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip().to_string())
                .collect()
        })
        .unwrap_or_default();
    ip_addresses.sort();
    ip_addresses.dedup();
    Facts {
        hostname,
        mac: primary_mac(),
        ip_addresses,
        os,
        model,
    }
}

/// The MAC of the first interface by name, preferring physical ones (those with a `device` link).
fn primary_mac() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    let mac_of = |n: &String| {
        read_trimmed(format!("/sys/class/net/{n}/address"))
            .filter(|m| m.len() == 17 && m != "00:00:00:00:00:00")
    };
    let physical = |n: &&String| Path::new(&format!("/sys/class/net/{n}/device")).exists();
    names
        .iter()
        .filter(physical)
        .find_map(mac_of)
        .or_else(|| names.iter().find_map(mac_of))
}

/// Turns successive `/proc/stat` readings into a CPU busy percentage.
#[derive(Debug, Default)]
pub struct StatsSampler {
    last_cpu: Option<(u64, u64)>,
    last_percent: f32,
    /// The directory whose filesystem's free space each sample reports.
    disk_root: Option<std::path::PathBuf>,
}

impl StatsSampler {
    /// A sampler with no previous reading.
    pub fn new() -> Self {
        Self::default()
    }

    /// Each sample also reports the free space of the filesystem holding `dir`.
    pub fn with_disk(dir: &Path) -> Self {
        StatsSampler {
            disk_root: Some(dir.to_path_buf()),
            ..Self::default()
        }
    }

    /// Takes a heartbeat's worth of stats. The first CPU figure is the average since boot.
    pub fn sample(&mut self) -> Heartbeat {
        let cpu = read_cpu_times();
        match (cpu, self.last_cpu) {
            // Too few ticks since the last sample (two heartbeats in quick succession after a
            // reconnect) give a meaningless ratio such as 1 of 1: keep the previous figure.
            (Some((_, total)), Some((_, t0))) if total < t0 + MIN_CPU_TICKS => {}
            (Some((busy, total)), Some((b0, t0))) => {
                self.last_percent = busy.saturating_sub(b0) as f32 * 100.0 / (total - t0) as f32;
                self.last_cpu = cpu;
            }
            (Some((busy, total)), None) if total > 0 => {
                self.last_percent = busy as f32 * 100.0 / total as f32;
                self.last_cpu = cpu;
            }
            _ => {}
        }
        let cpu_percent = self.last_percent;
        let (mem_total_bytes, mem_used_bytes) = read_memory().unwrap_or((0, 0));
        let uptime_secs = read_trimmed("/proc/uptime")
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| s as u64)
            .unwrap_or(0);
        Heartbeat {
            cpu_percent: cpu_percent.clamp(0.0, 100.0),
            mem_used_bytes,
            mem_total_bytes,
            temperature_c: read_temperature(),
            uptime_secs,
            sent_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok()),
            disk: self.disk_root.as_deref().and_then(disk_space),
        }
    }
}

/// Free and total space of the filesystem holding `dir`, or of its nearest existing parent (a
/// node without Docker yet reports where Docker's data would go). `None` when unreadable.
pub fn disk_space(dir: &Path) -> Option<trellis_proto::DiskSpace> {
    let mut at = dir;
    let stat = loop {
        match rustix::fs::statvfs(at) {
            Ok(s) => break s,
            Err(_) => at = at.parent()?,
        }
    };
    let frsize = if stat.f_frsize > 0 {
        stat.f_frsize
    } else {
        stat.f_bsize
    };
    Some(trellis_proto::DiskSpace {
        path: at.display().to_string(),
        free_bytes: stat.f_bavail.saturating_mul(frsize),
        total_bytes: stat.f_blocks.saturating_mul(frsize),
    })
}

/// Fewest clock ticks (summed over all CPUs, 100 per second each) between two CPU samples.
const MIN_CPU_TICKS: u64 = 20;

/// (busy, total) jiffies from the aggregate `cpu` line of `/proc/stat`.
fn read_cpu_times() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (total, used) bytes from `/proc/meminfo`, used = MemTotal − MemAvailable.
fn read_memory() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    Some((total, total.saturating_sub(available)))
}

/// The first thermal zone's temperature in °C, if the machine has one.
fn read_temperature() -> Option<f32> {
    let mut zones: Vec<_> = fs::read_dir("/sys/class/thermal")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .map(|e| e.path())
        .collect();
    zones.sort();
    zones
        .iter()
        .find_map(|z| read_trimmed(z.join("temp"))?.parse::<f32>().ok())
        .map(|milli| milli / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line_counts_idle_and_iowait_as_not_busy() {
        assert_eq!(
            parse_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0"),
            Some((150, 1000))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
        assert_eq!(parse_cpu_line("cpu 1 2"), None);
    }

    #[test]
    fn meminfo_used_is_total_minus_available() {
        let text = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(parse_meminfo(text), Some((1_024_000, 614_400)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn default_node_id_comes_from_the_mac_or_a_safe_hostname() {
        let f = Facts {
            hostname: "lab pi.local".into(),
            mac: Some("b8:27:eb:01:02:03".into()),
            ip_addresses: vec![],
            os: "x".into(),
            model: None,
        };
        assert_eq!(f.default_node_id(), "b827eb010203");
        let f = Facts { mac: None, ..f };
        assert_eq!(f.default_node_id(), "lab-pi-local");
    }

    #[test]
    fn a_sample_on_this_machine_reports_memory_and_uptime() {
        let beat = StatsSampler::with_disk(Path::new("/nonexistent/docker")).sample();
        let disk = beat.disk.clone().expect("the root filesystem's space");
        assert_eq!(disk.path, "/", "the nearest existing parent is measured");
        assert!(disk.total_bytes > 0 && disk.free_bytes <= disk.total_bytes);
        assert!(beat.mem_total_bytes > 0 && beat.mem_used_bytes <= beat.mem_total_bytes);
        assert!(beat.uptime_secs > 0);
        assert!((0.0..=100.0).contains(&beat.cpu_percent));
    }
}
