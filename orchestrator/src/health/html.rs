//! HTML primitives for the status page: escaping, the relative-time element the script
//! keeps ticking, and inline-SVG sparklines.

use std::fmt::Write as _;

use pifleet_protocol::human::ago;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A `<time>` the page's script keeps ticking. Without `now` (live updates) it is left
/// empty for the script to fill, so an unchanged card renders to the same bytes.
pub(super) fn time(at: f64, now: Option<f64>) -> String {
    let text = now.map(|now| ago(at, now)).unwrap_or_default();
    format!(r#"<time data-ts="{at:.3}">{}</time>"#, escape(&text))
}

/// An inline SVG sparkline of `values` (gaps for missing points) on a fixed `lo..hi`
/// scale, with an optional dashed limit line.
pub fn sparkline(
    values: &[Option<f64>],
    lo: f64,
    hi: f64,
    limit: Option<f64>,
    label: &str,
) -> String {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    let span = (hi - lo).max(f64::EPSILON);
    let y = |v: f64| H - 1.0 - ((v - lo) / span).clamp(0.0, 1.0) * (H - 2.0);
    let n = values.len();
    let x = |i: usize| {
        if n <= 1 {
            W
        } else {
            i as f64 * W / (n - 1) as f64
        }
    };
    let mut svg = format!(
        r#"<svg class="spark" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        escape(label)
    );
    if let Some(l) = limit.filter(|l| *l > lo && *l < hi) {
        let _ = write!(
            svg,
            r#"<line class="limit" x1="0" x2="{W}" y1="{0:.1}" y2="{0:.1}"/>"#,
            y(l)
        );
    }
    // One polyline per run of present points.
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, svg: &mut String| {
        if run.len() == 1 {
            let only = run[0].clone();
            run.push(only);
        }
        if !run.is_empty() {
            let _ = write!(svg, r#"<polyline points="{}"/>"#, run.join(" "));
            run.clear();
        }
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => run.push(format!("{:.1},{:.1}", x(i), y(*v))),
            _ => flush(&mut run, &mut svg),
        }
    }
    flush(&mut run, &mut svg);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_breaks_at_missing_points() {
        let svg = sparkline(
            &[Some(0.0), None, Some(100.0), Some(50.0)],
            0.0,
            100.0,
            None,
            "x",
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
