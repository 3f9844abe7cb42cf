//! Helpers shared by the agent's integration tests.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A fresh, empty directory for one test, removed when the value is dropped.
pub fn tempdir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("pifleet-agent-{name}-"))
        .tempdir()
        .expect("a temporary directory")
}

pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A Pi 4's /proc and /sys with the given temperature (m°C), throttled word and memory.
pub struct FakePi {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    _root: TempDir,
}

impl FakePi {
    pub fn new(name: &str) -> FakePi {
        let root = tempdir(name);
        let pi = FakePi {
            proc_root: root.path().join("proc"),
            sys_root: root.path().join("sys"),
            _root: root,
        };
        write(
            &pi.proc_root,
            "device-tree/model",
            "Raspberry Pi 4 Model B Rev 1.4\0",
        );
        write(&pi.proc_root, "sys/kernel/hostname", "pi-kitchen\n");
        write(&pi.proc_root, "uptime", "86400.52 300000.10\n");
        write(&pi.proc_root, "loadavg", "3.95 3.50 2.10 5/321 4242\n");
        pi.set_cpu(1000, 1000);
        write(
            &pi.sys_root,
            "class/thermal/thermal_zone0/type",
            "cpu-thermal\n",
        );
        pi
    }

    /// /proc/stat with these busy and idle jiffies on 4 cores.
    pub fn set_cpu(&self, busy: u64, idle: u64) {
        write(
            &self.proc_root,
            "stat",
            &format!(
                "cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\ncpu2 1 0 0 1 0 0 0 0 0 0\ncpu3 1 0 0 1 0 0 0 0 0 0\nintr 0\n"
            ),
        );
    }

    pub fn set_temp_millic(&self, t: i64) {
        write(
            &self.sys_root,
            "class/thermal/thermal_zone0/temp",
            &format!("{t}\n"),
        );
    }

    pub fn set_throttled(&self, word: &str) {
        write(
            &self.sys_root,
            "devices/platform/soc/soc:firmware/get_throttled",
            word,
        );
    }

    pub fn set_meminfo(&self, total_kb: u64, avail_kb: u64, swap_total_kb: u64, swap_free_kb: u64) {
        write(
            &self.proc_root,
            "meminfo",
            &format!(
                "MemTotal:       {total_kb} kB\nMemFree:          10000 kB\nMemAvailable:   {avail_kb} kB\nBuffers:            100 kB\nSwapTotal:      {swap_total_kb} kB\nSwapFree:       {swap_free_kb} kB\n"
            ),
        );
    }
}
