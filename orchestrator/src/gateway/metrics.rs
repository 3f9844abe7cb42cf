//! The gateway's `/metrics`: requests by API, endpoint and outcome; time to first chunk
//! and relayed tokens per second by model.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pifleet_gateway_requests_total` | counter | `api`, `endpoint`, `outcome` |
//! | `pifleet_gateway_relayed_chunks_total` | counter | |
//! | `pifleet_gateway_time_to_first_token_seconds` | histogram | `model` |
//! | `pifleet_gateway_tokens_per_second` | histogram | `model` |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Request start to first chunk at the client: queueing, a model load, the first token.
const TTFT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// A Pi generates a few to a few dozen tokens per second; the double far more.
const TPS_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 20000.0,
];

fn ttft_hist() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

fn tps_hist() -> Histogram {
    Histogram::new(TPS_BUCKETS)
}

/// Cheap to clone: the families share their values.
#[derive(Clone)]
pub struct GatewayMetrics {
    requests: Family<Labels, Counter>,
    chunks: Counter,
    ttft: HistFamily,
    tps: HistFamily,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            requests: Family::default(),
            chunks: Counter::default(),
            ttft: Family::new_with_constructor(ttft_hist as fn() -> Histogram),
            tps: Family::new_with_constructor(tps_hist as fn() -> Histogram),
        }
    }
}

impl GatewayMetrics {
    /// `outcome`: `ok`, `client_error`, `unavailable`, `failed`, `cancelled`.
    pub fn request(&self, api: &str, endpoint: &str, outcome: &str) {
        self.requests
            .get_or_create(&vec![
                ("api", api.to_string()),
                ("endpoint", endpoint.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    pub fn chunks(&self, n: u64) {
        self.chunks.inc_by(n);
    }

    pub fn first_token(&self, model: &str, seconds: f64) {
        self.ttft
            .get_or_create(&vec![("model", model.to_string())])
            .observe(seconds);
    }

    pub fn tokens_per_second(&self, model: &str, tps: f64) {
        if tps.is_finite() && tps > 0.0 {
            self.tps
                .get_or_create(&vec![("model", model.to_string())])
                .observe(tps);
        }
    }

    /// Adds the gateway's families to a scrape's registry.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pifleet_gateway_requests",
            "Gateway requests by API, endpoint and outcome",
            self.requests.clone(),
        );
        r.register(
            "pifleet_gateway_relayed_chunks",
            "Streamed chunks relayed from nodes to clients",
            self.chunks.clone(),
        );
        r.register(
            "pifleet_gateway_time_to_first_token_seconds",
            "Request arrival to the first streamed chunk sent to the client",
            self.ttft.clone(),
        );
        r.register(
            "pifleet_gateway_tokens_per_second",
            "Generated tokens per second of each streamed answer (Ollama's eval rate)",
            self.tps.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_by_model() {
        let m = GatewayMetrics::default();
        m.request("openai", "chat", "ok");
        m.first_token("llama3.2:1b", 0.02);
        m.tokens_per_second("llama3.2:1b", 40.0);
        let mut r = Registry::default();
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        for line in [
            r#"pifleet_gateway_requests_total{api="openai",endpoint="chat",outcome="ok"} 1"#,
            r#"pifleet_gateway_time_to_first_token_seconds_count{model="llama3.2:1b"} 1"#,
            r#"pifleet_gateway_tokens_per_second_count{model="llama3.2:1b"} 1"#,
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
        }
    }
}
