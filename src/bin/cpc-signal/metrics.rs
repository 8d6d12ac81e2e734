//! `/metrics` in the Prometheus text format (prometheus-client), and the
//! rate-limited log line of each refusal class.
//!
//! Two kinds of figures: those this server's edge keeps itself (counters
//! and gauges updated as connections come and go) and [`Reading`]s taken
//! from a snapshot at scrape time (the signaling rooms keep their own
//! counts; [`Metrics::with_readings`] registers a function that reads them).

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::limits::LogLimit;

/// Why a connection was refused or closed before it made a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `MAX_CONNECTIONS` connections were open.
    GlobalCap,
    /// `MAX_PER_ADDRESS` connections were open from the same IP address.
    PerAddressCap,
    /// The request header did not arrive within the header timeout.
    HeaderTimeout,
    /// `accept` failed, most often out of file descriptors.
    AcceptError,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::GlobalCap,
        Refusal::PerAddressCap,
        Refusal::HeaderTimeout,
        Refusal::AcceptError,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::GlobalCap => "global_cap",
            Refusal::PerAddressCap => "per_address_cap",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::AcceptError => "accept_error",
        }
    }
}

/// A figure read at scrape time.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Without the `cpc_signal_` prefix (the registry adds it), and for
    /// counters without `_total` (the encoder adds it).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: ReadingKind,
    /// Label pairs; readings of one name with different labels are one
    /// family (give them next to each other).
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

impl Reading {
    /// A counter without labels.
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Reading {
        Reading::plain(name, help, ReadingKind::Counter, value)
    }

    /// A gauge without labels.
    pub fn gauge(name: &'static str, help: &'static str, value: u64) -> Reading {
        Reading::plain(name, help, ReadingKind::Gauge, value)
    }

    fn plain(name: &'static str, help: &'static str, kind: ReadingKind, value: u64) -> Reading {
        Reading {
            name,
            help,
            kind,
            labels: vec![],
            value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadingKind {
    Counter,
    Gauge,
}

type ReadFn = Box<dyn Fn() -> Vec<Reading> + Send + Sync>;

/// A collector over a function that returns [`Reading`]s.
struct Readings(ReadFn);

impl fmt::Debug for Readings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Readings")
    }
}

impl Collector for Readings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let readings = (self.0)();
        let mut rest = &readings[..];
        while let Some(first) = rest.first() {
            let family = rest.iter().take_while(|r| r.name == first.name).count();
            let kind = match first.kind {
                ReadingKind::Counter => MetricType::Counter,
                ReadingKind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(first.name, first.help, None, kind)?;
            for reading in &rest[..family] {
                let labels: Vec<(&str, &str)> = reading
                    .labels
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect();
                let encoder = metric.encode_family(&labels)?;
                match reading.kind {
                    ReadingKind::Counter => ConstCounter::new(reading.value).encode(encoder)?,
                    ReadingKind::Gauge => {
                        ConstGauge::new(i64::try_from(reading.value).unwrap_or(i64::MAX))
                            .encode(encoder)?
                    }
                }
            }
            rest = &rest[family..];
        }
        Ok(())
    }
}

type ReasonLabel = [(&'static str, &'static str); 1];
type CodeLabel = [(&'static str, String); 1];

/// The server's metrics and refusal log.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    open: Gauge,
    accepted: Counter,
    refused: Family<ReasonLabel, Counter>,
    requests: Family<CodeLabel, Counter>,
    logs: Mutex<[LogLimit; 4]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cpc_signal");
        let open = Gauge::default();
        let accepted = Counter::default();
        let refused = Family::<ReasonLabel, Counter>::default();
        let requests = Family::<CodeLabel, Counter>::default();
        registry.register(
            "connections_open",
            "TCP connections open: HTTP ones and WebSockets",
            open.clone(),
        );
        registry.register(
            "connections_accepted",
            "TCP connections accepted within the limits",
            accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused or closed before a request, by reason",
            refused.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by status code (101: WebSocket upgrades)",
            requests.clone(),
        );
        // Every reason shows, at 0 until it happens.
        for reason in Refusal::ALL {
            let _ = refused.get_or_create(&[("reason", reason.label())]);
        }
        Metrics {
            registry,
            open,
            accepted,
            refused,
            requests,
            logs: Mutex::default(),
        }
    }

    /// Adds figures read at each scrape from `read`.
    pub fn with_readings(
        mut self,
        read: impl Fn() -> Vec<Reading> + Send + Sync + 'static,
    ) -> Metrics {
        self.registry
            .register_collector(Box::new(Readings(Box::new(read))));
        self
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// A connection was admitted: counted open until the guard drops.
    pub fn admitted(&self) -> OpenGuard {
        self.accepted.inc();
        self.open.inc();
        OpenGuard(self.open.clone())
    }

    pub fn request(&self, status: u16) {
        self.requests
            .get_or_create(&[("code", status.to_string())])
            .inc();
    }

    /// Counts a refusal and logs it, one line per class per
    /// [`LOG_EVERY`](crate::limits::LOG_EVERY).
    pub fn refused(&self, reason: Refusal, detail: &dyn fmt::Display) {
        self.refused
            .get_or_create(&[("reason", reason.label())])
            .inc();
        let index = Refusal::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        let due = {
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            logs[index].note(Instant::now())
        };
        if let Some(count) = due {
            eprintln!(
                "cpc-signal: connection refused ({}): {detail}; {count} refused for this reason \
                 since the last such line",
                reason.label()
            );
        }
    }
}

/// Counts a connection open while it lives.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_render_as_families_beside_the_own_metrics() {
        let metrics = Metrics::new().with_readings(|| {
            vec![
                Reading {
                    name: "rooms",
                    help: "Rooms open",
                    kind: ReadingKind::Gauge,
                    labels: vec![],
                    value: 3,
                },
                Reading {
                    name: "joins_refused",
                    help: "Joins refused, by reason",
                    kind: ReadingKind::Counter,
                    labels: vec![("reason", "room_full".into())],
                    value: 2,
                },
                Reading {
                    name: "joins_refused",
                    help: "Joins refused, by reason",
                    kind: ReadingKind::Counter,
                    labels: vec![("reason", "bad_proof".into())],
                    value: 5,
                },
            ]
        });
        metrics.refused(Refusal::PerAddressCap, &"test");
        let _open = metrics.admitted();
        let text = metrics.render();
        for line in [
            "cpc_signal_rooms 3",
            "# TYPE cpc_signal_joins_refused_total counter",
            "cpc_signal_joins_refused_total{reason=\"room_full\"} 2",
            "cpc_signal_joins_refused_total{reason=\"bad_proof\"} 5",
            "cpc_signal_connections_refused_total{reason=\"per_address_cap\"} 1",
            "cpc_signal_connections_refused_total{reason=\"global_cap\"} 0",
            "cpc_signal_connections_open 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }
}
