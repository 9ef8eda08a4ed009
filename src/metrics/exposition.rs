//! Encoding a registry for a `/metrics` endpoint, in the format the scraper asks for.

use std::{collections::HashMap, fmt};

use http::HeaderValue;
use prometheus_client::registry::Registry;

/// The exposition formats a `/metrics` endpoint can answer with.
///
/// Prometheus asks for OpenMetrics first; only OpenMetrics carries exemplars. Other readers
/// (`curl`, `promtool check metrics`, older agents) expect the classic Prometheus text
/// format, in which exemplars, units and `# EOF` do not exist and a counter's family is named
/// with its `_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpositionFormat {
    /// OpenMetrics 1.0 text: `application/openmetrics-text; version=1.0.0; charset=utf-8`.
    OpenMetrics,
    /// Prometheus text 0.0.4: `text/plain; version=0.0.4; charset=utf-8`.
    Prometheus,
}

impl ExpositionFormat {
    /// The format an `Accept` header asks for: OpenMetrics if it lists
    /// `application/openmetrics-text` (with a non-zero `q`), the Prometheus text format
    /// otherwise, including when there is no header.
    #[must_use]
    pub fn negotiate(accept: Option<&HeaderValue>) -> Self {
        let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
            return Self::Prometheus;
        };
        let wants_openmetrics = accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of a response in this format.
    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Encodes `registry` in `format`.
///
/// OpenMetrics is prometheus-client's own encoding. The Prometheus text format is derived
/// from it: exemplars, `# UNIT` lines, `_created` samples and `# EOF` are dropped, a
/// counter's `HELP` and `TYPE` name gains `_total` (the name its samples have), `info`
/// becomes a `gauge` named `…_info`, and `unknown` becomes `untyped`.
///
/// A `/metrics` handler for axum:
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, extract::State, response::IntoResponse, routing::get};
/// use http::{HeaderMap, StatusCode, header};
/// use prometheus_client::registry::Registry;
/// use tower_bulwark::metrics::{ExpositionFormat, encode};
///
/// async fn metrics(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> impl IntoResponse {
///     let format = ExpositionFormat::negotiate(headers.get(header::ACCEPT));
///     match encode(&registry, format) {
///         Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
///         Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
///     }
/// }
///
/// let registry = Arc::new(Registry::default());
/// let app: Router = Router::new().route("/metrics", get(metrics)).with_state(registry);
/// # let _ = app;
/// ```
pub fn encode(registry: &Registry, format: ExpositionFormat) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(match format {
        ExpositionFormat::OpenMetrics => text,
        ExpositionFormat::Prometheus => to_prometheus_text(&text),
    })
}

/// OpenMetrics text as prometheus-client writes it → Prometheus text 0.0.4.
fn to_prometheus_text(openmetrics: &str) -> String {
    let types: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    let rename = |name: &str| -> (String, &'static str) {
        match types.get(name).copied() {
            Some("counter") => (format!("{name}_total"), "counter"),
            Some("gauge") => (name.to_owned(), "gauge"),
            Some("histogram") => (name.to_owned(), "histogram"),
            Some("info") => (format!("{name}_info"), "gauge"),
            _ => (name.to_owned(), "untyped"),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((name, help)) = line.strip_prefix("# HELP ").and_then(|l| l.split_once(' ')) {
            out.push_str("# HELP ");
            out.push_str(&rename(name).0);
            out.push(' ');
            out.push_str(help);
        } else if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.split(' ').next())
        {
            let (name, kind) = rename(name);
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = strip_exemplar(line);
            let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
            if sample[..name_end].ends_with("_created") {
                continue;
            }
            out.push_str(sample);
        }
        out.push('\n');
    }
    out
}

/// The sample without its ` # {…} value [timestamp]` exemplar. The label set is skipped
/// with its quoting in mind, since a label value may itself hold ` # `.
fn strip_exemplar(line: &str) -> &str {
    let mut in_labels = false;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' if in_labels => in_quotes = !in_quotes,
            '{' if !in_quotes => in_labels = true,
            '}' if !in_quotes => in_labels = false,
            '#' if !in_labels && line[..i].ends_with(' ') => return line[..i - 1].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_prometheus_asks() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        let prometheus = h(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                            version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        );
        assert_eq!(
            ExpositionFormat::negotiate(Some(&prometheus)),
            ExpositionFormat::OpenMetrics
        );
        assert_eq!(
            ExpositionFormat::negotiate(None),
            ExpositionFormat::Prometheus
        );
        assert_eq!(
            ExpositionFormat::negotiate(Some(&h("*/*"))),
            ExpositionFormat::Prometheus
        );
        let refused = h("application/openmetrics-text; q=0, text/plain");
        assert_eq!(
            ExpositionFormat::negotiate(Some(&refused)),
            ExpositionFormat::Prometheus
        );
    }

    #[test]
    fn converts_openmetrics_to_prometheus_text() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
                  a_requests_total{route=\"/x # {y}\"} 3 # {trace_id=\"ab\"} 1.0\n\
                  a_requests_created{route=\"/x\"} 1.0\n\
                  # HELP d_seconds Latency.\n# TYPE d_seconds histogram\n# UNIT d_seconds seconds\n\
                  d_seconds_sum 0.5\nd_seconds_count 1\n\
                  d_seconds_bucket{le=\"1.0\"} 1 # {trace_id=\"cd\"} 0.5\nd_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP v Version.\n# TYPE v info\nv_info{version=\"1\"} 1\n# EOF\n";
        let expected = "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
                        a_requests_total{route=\"/x # {y}\"} 3\n\
                        # HELP d_seconds Latency.\n# TYPE d_seconds histogram\n\
                        d_seconds_sum 0.5\nd_seconds_count 1\n\
                        d_seconds_bucket{le=\"1.0\"} 1\nd_seconds_bucket{le=\"+Inf\"} 1\n\
                        # HELP v_info Version.\n# TYPE v_info gauge\nv_info{version=\"1\"} 1\n";
        assert_eq!(to_prometheus_text(om), expected);
        assert_eq!(
            strip_exemplar(r#"x{a="\" # "} 1 # {t="1"} 2"#),
            r#"x{a="\" # "} 1"#
        );
    }
}
