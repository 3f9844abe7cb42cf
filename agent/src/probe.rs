//! Host facts and live metrics, read straight from /proc and /sys (no sysinfo: it reads the
//! whole process table, which costs RSS and CPU a Pi agent does not need to spend).
//!
//! Both roots are configurable so tests can feed a fake Pi. A file that is missing or
//! unparsable leaves its field absent; nothing is ever guessed.

use std::path::{Path, PathBuf};

use pifleet_protocol::NodeMetrics;

/// What a node is; sent once at registration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    pub hostname: Option<String>,
    pub cores: Option<u32>,
    pub memory_total_bytes: Option<u64>,
    pub arch: String,
    pub pi_model: Option<String>,
}

/// The outside world as the heartbeat sees it.
pub trait Probe: Send {
    fn facts(&self) -> HostFacts;
    /// Metrics now. CPU % is measured since the previous call (absent on the first).
    fn metrics(&mut self) -> NodeMetrics;
}

/// The real probe over a /proc and a /sys tree.
pub struct SysProbe {
    proc_root: PathBuf,
    sys_root: PathBuf,
    disk_path: PathBuf,
    prev_cpu: Option<CpuTimes>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl SysProbe {
    /// `disk_path` is the directory whose filesystem's free space is reported.
    pub fn new(proc_root: &Path, sys_root: &Path, disk_path: &Path) -> SysProbe {
        let mut p = SysProbe {
            proc_root: proc_root.to_path_buf(),
            sys_root: sys_root.to_path_buf(),
            disk_path: disk_path.to_path_buf(),
            prev_cpu: None,
        };
        // A first sample now, so the first heartbeat already has a CPU figure.
        p.prev_cpu = p.cpu_times();
        p
    }

    fn read(&self, root: &Path, rel: &str) -> Option<String> {
        std::fs::read_to_string(root.join(rel)).ok()
    }

    fn cpu_times(&self) -> Option<CpuTimes> {
        parse_cpu_times(&self.read(&self.proc_root, "stat")?)
    }

    fn temperature_c(&self) -> Option<f32> {
        let base = self.sys_root.join("class/thermal");
        let mut zones: Vec<PathBuf> = std::fs::read_dir(&base)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("thermal_zone"))
            })
            .collect();
        zones.sort();
        // The Pi's SoC sensor is `cpu-thermal`; elsewhere prefer anything cpu/soc/package-like.
        let preferred = zones.iter().find(|z| {
            std::fs::read_to_string(z.join("type")).is_ok_and(|t| {
                let t = t.trim().to_ascii_lowercase();
                t.contains("cpu") || t.contains("soc") || t.contains("x86_pkg")
            })
        });
        let zone = preferred.or(zones.first())?;
        let milli: f64 = std::fs::read_to_string(zone.join("temp"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some((milli / 1000.0) as f32)
    }

    fn throttled(&self) -> Option<u32> {
        parse_throttled(&self.read(
            &self.sys_root,
            "devices/platform/soc/soc:firmware/get_throttled",
        )?)
    }

    fn disk_free_bytes(&self) -> Option<u64> {
        let st = rustix::fs::statvfs(&self.disk_path).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

impl Probe for SysProbe {
    fn facts(&self) -> HostFacts {
        let meminfo = self.read(&self.proc_root, "meminfo");
        HostFacts {
            hostname: self
                .read(&self.proc_root, "sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            cores: self
                .read(&self.proc_root, "stat")
                .and_then(|s| count_cpus(&s))
                .or_else(|| {
                    std::thread::available_parallelism()
                        .ok()
                        .map(|n| n.get() as u32)
                }),
            memory_total_bytes: meminfo
                .as_deref()
                .and_then(|m| meminfo_bytes(m, "MemTotal")),
            arch: std::env::consts::ARCH.to_string(),
            pi_model: self
                .read(&self.proc_root, "device-tree/model")
                .map(|s| s.trim_end_matches('\0').trim().to_string())
                .filter(|s| !s.is_empty()),
        }
    }

    fn metrics(&mut self) -> NodeMetrics {
        let now = self.cpu_times();
        let cpu_percent = match (self.prev_cpu, now) {
            (Some(a), Some(b)) => cpu_percent(a, b),
            _ => None,
        };
        if now.is_some() {
            self.prev_cpu = now;
        }
        let meminfo = self.read(&self.proc_root, "meminfo");
        let mem = |key| meminfo.as_deref().and_then(|m| meminfo_bytes(m, key));
        NodeMetrics {
            cpu_percent,
            load_avg: self
                .read(&self.proc_root, "loadavg")
                .and_then(|s| parse_loadavg(&s)),
            memory_total_bytes: mem("MemTotal"),
            memory_available_bytes: mem("MemAvailable"),
            swap_total_bytes: mem("SwapTotal"),
            swap_free_bytes: mem("SwapFree"),
            temperature_c: self.temperature_c(),
            throttled: self.throttled(),
            disk_free_bytes: self.disk_free_bytes(),
            uptime_s: self
                .read(&self.proc_root, "uptime")
                .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
                .map(|u| u as u64),
            ..NodeMetrics::default()
        }
    }
}

fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is already in user.
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

fn cpu_percent(a: CpuTimes, b: CpuTimes) -> Option<f32> {
    let dt = b.total.checked_sub(a.total)?;
    let db = b.busy.checked_sub(a.busy)?;
    if dt == 0 {
        return None;
    }
    Some(((db as f64 / dt as f64) * 100.0).clamp(0.0, 100.0) as f32)
}

fn count_cpus(stat: &str) -> Option<u32> {
    let n = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    (n > 0).then_some(n)
}

fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.split(':').next() == Some(key))?;
    let mut parts = line.split(':').nth(1)?.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

fn parse_loadavg(s: &str) -> Option<[f32; 3]> {
    let mut it = s.split_whitespace().map(|x| x.parse::<f32>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The firmware prints the word in hex, with or without `0x`; `vcgencmd` prints
/// `throttled=0x50005`.
fn parse_throttled(s: &str) -> Option<u32> {
    let s = s.trim();
    let s = s.strip_prefix("throttled=").unwrap_or(s);
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_two_samples() {
        let a = parse_cpu_times("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 1 1 1\n").unwrap();
        let b = parse_cpu_times("cpu  150 0 150 900 0 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_percent(a, b), Some(50.0));
        assert_eq!(cpu_percent(b, b), None);
    }

    #[test]
    fn throttled_word_forms() {
        assert_eq!(parse_throttled("50005\n"), Some(0x50005));
        assert_eq!(parse_throttled("0x50005"), Some(0x50005));
        assert_eq!(parse_throttled("throttled=0x0"), Some(0));
        assert_eq!(parse_throttled("garbage"), None);
    }

    #[test]
    fn meminfo_units() {
        let m = "MemTotal:        3884096 kB\nMemAvailable:     123 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(m, "MemTotal"), Some(3_884_096 * 1024));
        assert_eq!(meminfo_bytes(m, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(m, "SwapFree"), None);
    }

    #[test]
    fn loadavg_parses() {
        assert_eq!(
            parse_loadavg("3.91 2.05 1.01 5/300 4242\n"),
            Some([3.91, 2.05, 1.01])
        );
        assert_eq!(parse_loadavg("x"), None);
    }
}
