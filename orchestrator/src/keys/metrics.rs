//! `/metrics` per client key: requests, tasks, generated tokens and refusals, labelled
//! by key name (never the secret). Counts since the server started.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pifleet_key_requests_total` | counter | `key` |
//! | `pifleet_key_tasks_total` | counter | `key` |
//! | `pifleet_key_generated_tokens_total` | counter | `key` |
//! | `pifleet_key_refused_total` | counter | `key`, `reason` (`role`, `rate`, `tokens`) |

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::UsageCounts;

type Labels = Vec<(String, String)>;

fn counter_family(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    r.register(name, help, f.clone());
    f
}

/// The exposition of the key counters, without the closing `# EOF`, to be placed
/// before the fleet's own.
pub fn render(usage: &[(String, UsageCounts)]) -> String {
    if usage.is_empty() {
        return String::new();
    }
    let mut r = Registry::default();
    let requests = counter_family(
        &mut r,
        "pifleet_key_requests",
        "Requests admitted per client key",
    );
    let tasks = counter_family(
        &mut r,
        "pifleet_key_tasks",
        "Tasks submitted per client key",
    );
    let tokens = counter_family(
        &mut r,
        "pifleet_key_generated_tokens",
        "Tokens generated for the tasks of each client key",
    );
    let refused = counter_family(
        &mut r,
        "pifleet_key_refused",
        "Requests refused per client key: role too low, rate or daily tokens used up",
    );
    for (name, u) in usage {
        let key = vec![("key".to_string(), name.clone())];
        requests.get_or_create(&key).inc_by(u.requests);
        tasks.get_or_create(&key).inc_by(u.tasks);
        tokens.get_or_create(&key).inc_by(u.generated_tokens);
        for (reason, n) in [
            ("role", u.refused_role),
            ("rate", u.refused_rate),
            ("tokens", u.refused_tokens),
        ] {
            let mut labels = key.clone();
            labels.push(("reason".to_string(), reason.to_string()));
            refused.get_or_create(&labels).inc_by(n);
        }
    }
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out.strip_suffix("# EOF\n").unwrap_or(&out).to_string()
}

/// `fleet` (a whole exposition) with `keys` placed before its `# EOF`.
pub fn splice(fleet: String, keys: &str) -> String {
    if keys.is_empty() {
        return fleet;
    }
    match fleet.strip_suffix("# EOF\n") {
        Some(head) => format!("{head}{keys}# EOF\n"),
        None => fleet + keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_per_key_name() {
        let usage = vec![(
            "ci".to_string(),
            UsageCounts {
                requests: 3,
                tasks: 2,
                generated_tokens: 120,
                refused_rate: 1,
                ..Default::default()
            },
        )];
        let text = splice("# EOF\n".to_string(), &render(&usage));
        assert!(
            text.contains("pifleet_key_requests_total{key=\"ci\"} 3"),
            "{text}"
        );
        assert!(text.contains("pifleet_key_generated_tokens_total{key=\"ci\"} 120"));
        assert!(text.contains("pifleet_key_refused_total{key=\"ci\",reason=\"rate\"} 1"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
