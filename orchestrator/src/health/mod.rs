//! Node health views, rendered from one [`FleetSnapshot`]: the status page's HTML
//! (`page`), its live updates as server-sent events (`events`) and the Prometheus
//! exposition (`metrics`). Pure rendering: the routes, the token checks and the
//! snapshot-taking are in [`crate::http`] and [`crate::fleet`], so the page, the event
//! stream and the metrics always agree with each other and with `/api/nodes`.

pub mod events;
pub mod metrics;
pub mod page;

pub use crate::fleet::{FailedTask, FleetSnapshot};
