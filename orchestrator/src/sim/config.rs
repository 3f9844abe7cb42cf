//! The simulator's input: boards, models and workload, from TOML (unknown keys rejected).

use serde::Deserialize;

/// The documented default fleet; `--print-config` shows it.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub duration_s: f64,
    pub warmup_s: f64,
    pub seed: u64,
    pub load: f64,
    pub heartbeat_s: f64,
    pub ambient_c: f64,
    pub dead_after_s: f64,
    pub placement: PlacementConfig,
    pub workload: Workload,
    #[serde(rename = "model")]
    pub models: Vec<ModelConfig>,
    #[serde(rename = "board")]
    pub boards: Vec<Board>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    pub max_hold_s: f64,
    pub hold_margin: f64,
    pub throttled_speed: f64,
    pub aging_s: f64,
    pub soft_temp_c: f32,
    pub hard_temp_c: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub prompt_tokens_median: f64,
    pub prompt_tokens_sigma: f64,
    pub output_tokens_median: f64,
    pub output_tokens_sigma: f64,
    pub max_tokens_share: f64,
    pub priorities: Vec<(u8, f64)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub size_mb: f64,
    pub pi5_gen_tps: f64,
    pub pi5_prompt_tps: f64,
    pub share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    pub pi_model: String,
    pub count: usize,
    pub memory_mb: u64,
    pub max_loaded: usize,
    pub disk_mb_s: f64,
    pub speed_factor: f64,
    pub speed_spread: f64,
    pub idle_c: f64,
    pub load_c: f64,
    pub tau_s: f64,
    pub throttle_factor: f64,
    pub mtbf_h: f64,
    pub repair_s: f64,
}

impl SimConfig {
    pub fn parse(text: &str, origin: &str) -> Result<SimConfig, String> {
        let c: SimConfig = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        c.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        let pos = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a positive number, got {v}"))
            }
        };
        pos("duration_s", self.duration_s)?;
        pos("load", self.load)?;
        pos("heartbeat_s", self.heartbeat_s)?;
        pos("dead_after_s", self.dead_after_s)?;
        pos("placement.throttled_speed", self.placement.throttled_speed)?;
        pos(
            "workload.prompt_tokens_median",
            self.workload.prompt_tokens_median,
        )?;
        pos(
            "workload.output_tokens_median",
            self.workload.output_tokens_median,
        )?;
        if !(0.0..self.duration_s).contains(&self.warmup_s) {
            return Err(format!(
                "warmup_s must be at least 0 and below duration_s ({}), got {}",
                self.duration_s, self.warmup_s
            ));
        }
        if self.models.is_empty() {
            return Err("at least one [[model]] is needed".into());
        }
        for m in &self.models {
            pos(&format!("model \"{}\" size_mb", m.name), m.size_mb)?;
            pos(&format!("model \"{}\" pi5_gen_tps", m.name), m.pi5_gen_tps)?;
            pos(
                &format!("model \"{}\" pi5_prompt_tps", m.name),
                m.pi5_prompt_tps,
            )?;
            pos(&format!("model \"{}\" share", m.name), m.share)?;
        }
        if self.boards.iter().map(|b| b.count).sum::<usize>() == 0 {
            return Err("the [[board]] counts add up to no node".into());
        }
        for b in &self.boards {
            let f = |k: &str| format!("board \"{}\" {k}", b.name);
            pos(&f("disk_mb_s"), b.disk_mb_s)?;
            pos(&f("speed_factor"), b.speed_factor)?;
            pos(&f("tau_s"), b.tau_s)?;
            pos(&f("throttle_factor"), b.throttle_factor)?;
            pos(&f("mtbf_h"), b.mtbf_h)?;
            if b.max_loaded == 0 {
                return Err(format!("{} must be at least 1", f("max_loaded")));
            }
        }
        if self.workload.priorities.is_empty() {
            return Err("workload.priorities needs at least one [priority, share]".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_parses_and_has_a_thousand_nodes() {
        let c = SimConfig::parse(DEFAULT_TOML, "default").unwrap();
        assert_eq!(c.boards.iter().map(|b| b.count).sum::<usize>(), 1000);
        assert_eq!(c.models.len(), 3);
    }

    #[test]
    fn mistakes_name_the_field() {
        let bad = DEFAULT_TOML.replace("load = 0.8", "load = -1");
        let e = SimConfig::parse(&bad, "f.toml").unwrap_err();
        assert!(
            e.contains("f.toml") && e.contains("load must be a positive"),
            "{e}"
        );
        let bad = DEFAULT_TOML.replace("seed = 42", "seed = 42\nsede = 1");
        let e = SimConfig::parse(&bad, "f.toml").unwrap_err();
        assert!(e.contains("sede"), "{e}");
    }
}
