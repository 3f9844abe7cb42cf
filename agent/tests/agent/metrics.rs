//! Host metrics read from a fake Pi's /proc and /sys tree.

use crate::util::{tempdir, FakePi};
use pifleet_agent::probe::{Probe, SysProbe};

#[test]
fn hot_throttled_pi_reports_heat_and_throttle_bits() {
    let pi = FakePi::new("hot");
    pi.set_temp_millic(84_704);
    pi.set_throttled("0x50006\n");
    pi.set_meminfo(3_884_096, 2_900_000, 102_396, 102_396);
    let state = tempdir("hot-state");
    let mut probe = SysProbe::new(&pi.proc_root, &pi.sys_root, state.path());
    pi.set_cpu(1900, 1100); // +900 busy, +100 idle since the first sample
    let m = probe.metrics();
    assert_eq!(m.cpu_percent, Some(90.0));
    assert!((m.temperature_c.unwrap() - 84.704).abs() < 0.01);
    assert_eq!(m.throttled, Some(0x50006));
    assert!(m.throttled_now(), "frequency capped + throttled now");
    assert!(!m.under_voltage_now());
    assert_eq!(m.load_avg, Some([3.95, 3.5, 2.1]));
    assert_eq!(m.uptime_s, Some(86_400));
    assert!(m.disk_free_bytes.is_some_and(|b| b > 0));

    let facts = probe.facts();
    assert_eq!(
        facts.pi_model.as_deref(),
        Some("Raspberry Pi 4 Model B Rev 1.4")
    );
    assert_eq!(facts.cores, Some(4));
    assert_eq!(facts.hostname.as_deref(), Some("pi-kitchen"));
    assert_eq!(facts.memory_total_bytes, Some(3_884_096 * 1024));
}

#[test]
fn memory_starved_under_voltage_pi() {
    let pi = FakePi::new("starved");
    pi.set_temp_millic(51_000);
    pi.set_throttled("50005");
    pi.set_meminfo(948_012, 41_000, 102_396, 1_024);
    let state = tempdir("starved-state");
    let mut probe = SysProbe::new(&pi.proc_root, &pi.sys_root, state.path());
    let m = probe.metrics();
    assert_eq!(m.memory_total_bytes, Some(948_012 * 1024));
    assert_eq!(m.memory_available_bytes, Some(41_000 * 1024));
    assert_eq!(m.swap_total_bytes, Some(102_396 * 1024));
    assert_eq!(m.swap_free_bytes, Some(1_024 * 1024));
    assert!(m.under_voltage_now());
    assert_eq!(
        m.cpu_percent, None,
        "no time passed: no CPU figure, not a guess"
    );
}

#[test]
fn missing_files_leave_fields_absent() {
    let empty = tempdir("empty-root");
    let empty = empty.path();
    let mut probe = SysProbe::new(&empty.join("proc"), &empty.join("sys"), empty);
    let m = probe.metrics();
    assert_eq!(m.cpu_percent, None);
    assert_eq!(m.load_avg, None);
    assert_eq!(m.memory_total_bytes, None);
    assert_eq!(m.temperature_c, None);
    assert_eq!(m.throttled, None);
    assert_eq!(m.uptime_s, None);
    let json = serde_json::to_value(&m).unwrap();
    assert!(
        json.get("temperature_c").is_none(),
        "absent, not null: {json}"
    );
    assert_eq!(probe.facts().pi_model, None);
}
