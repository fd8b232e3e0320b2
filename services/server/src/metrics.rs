//! `/metrics`: the Prometheus text of the auth layers registered in one
//! [`Registry`], one series per service, outcome and reason, how long each
//! followed feed has been silent and how far it was applied, and every
//! server's call latencies ([`crate::latency`]). The binary makes one registry
//! per process and hands it to every server it starts, so each mesh (and each
//! test) counts only its own requests.

use std::{
    collections::BTreeMap,
    fmt::Write,
    future::Future,
    sync::{Arc, Mutex, Weak},
};

use axum::{Router, http::header::CONTENT_TYPE, routing::get};
use tokenmesh_interceptor::{AuthMetrics, FeedFreshness};

use crate::latency::Latencies;
use tokio::net::TcpListener;

/// A service name and its layer's counters, weak so a stopped server's layer goes
/// away.
type Layers = Vec<(String, Weak<AuthMetrics>)>;

/// A service name, a feed it follows and how current that feed is.
type Feeds = Vec<(String, &'static str, Weak<FeedFreshness>)>;

/// Samples a service exports beside its auth layer's counters (Auth's password
/// checks, its throttles): Prometheus text, `# HELP`/`# TYPE` lines included.
pub trait Samples: Send + Sync {
    /// Appends the samples to `out`.
    fn render(&self, out: &mut String);
}

/// The auth layers of the servers started with this registry, the other
/// samples their services export, and the feeds they follow.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    layers: Arc<Mutex<Layers>>,
    samples: Arc<Mutex<Vec<Weak<dyn Samples>>>>,
    feeds: Arc<Mutex<Feeds>>,
    latencies: Arc<Mutex<Vec<Weak<Latencies>>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exposes `metrics` under `service` (several layers of one service are summed).
    pub fn register(&self, service: &str, metrics: &Arc<AuthMetrics>) {
        let mut layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        layers.retain(|(_, layer)| layer.strong_count() > 0);
        layers.push((service.to_owned(), Arc::downgrade(metrics)));
    }

    /// Exposes how long `service`'s `feed` has been silent, as
    /// `tokenmesh_feed_silence_seconds` (`+Inf` before it was ever heard), and
    /// the last position it applied, as `tokenmesh_feed_position`.
    pub fn register_feed(&self, service: &str, feed: &'static str, freshness: &Arc<FeedFreshness>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds.retain(|(_, _, freshness)| freshness.strong_count() > 0);
        feeds.push((service.to_owned(), feed, Arc::downgrade(freshness)));
    }

    /// Exposes a server's call latencies while they live (one family for all
    /// servers: its `# TYPE` line once).
    pub fn register_latencies(&self, latencies: &Arc<Latencies>) {
        let mut all = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|latencies| latencies.strong_count() > 0);
        all.push(Arc::downgrade(latencies));
    }

    /// Exposes `samples` while they live (held weakly, like the layers).
    pub fn register_samples(&self, samples: &Arc<dyn Samples>) {
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|samples| samples.strong_count() > 0);
        all.push(Arc::downgrade(samples));
    }

    /// The Prometheus text exposition of every live layer, sample source and
    /// feed.
    pub fn render(&self) -> String {
        let mut out = self.render_layers();
        self.render_feeds(&mut out);
        out.push_str(Latencies::HEADER);
        let latencies = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        for server in latencies.iter().filter_map(Weak::upgrade) {
            server.render_samples(&mut out);
        }
        out
    }

    /// The feed gauges; a feed registered twice (two servers of one service)
    /// shows its longest silence and its lowest position.
    fn render_feeds(&self, out: &mut String) {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        // Never heard counts as the longest silence.
        let mut gauges: BTreeMap<(&str, &str), (i64, u64)> = BTreeMap::new();
        for (service, feed, freshness) in feeds.iter() {
            let Some(freshness) = freshness.upgrade() else {
                continue;
            };
            let silent = freshness.silent_secs().unwrap_or(i64::MAX);
            let position = freshness.position();
            let entry = gauges.entry((service, feed)).or_insert((silent, position));
            *entry = (entry.0.max(silent), entry.1.min(position));
        }
        out.push_str(FEED_HEADER);
        for ((service, feed), (silent, _)) in &gauges {
            let service = tokenmesh_interceptor::label_value(service);
            let value = match *silent {
                i64::MAX => "+Inf".to_owned(),
                seconds => seconds.to_string(),
            };
            let _ = writeln!(
                out,
                "tokenmesh_feed_silence_seconds{{service=\"{service}\",feed=\"{feed}\"}} {value}"
            );
        }
        out.push_str(FEED_POSITION_HEADER);
        for ((service, feed), (_, position)) in &gauges {
            let service = tokenmesh_interceptor::label_value(service);
            let _ = writeln!(
                out,
                "tokenmesh_feed_position{{service=\"{service}\",feed=\"{feed}\"}} {position}"
            );
        }
    }

    /// The layers' counters, then the other samples.
    fn render_layers(&self) -> String {
        let layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        let mut services: Vec<(&str, AuthMetrics)> = Vec::new();
        for (service, layer) in layers.iter() {
            let Some(layer) = layer.upgrade() else {
                continue;
            };
            let index = match services.iter().position(|(name, _)| name == service) {
                Some(index) => index,
                None => {
                    services.push((service, AuthMetrics::default()));
                    services.len() - 1
                }
            };
            layer.add_to(&services[index].1);
        }
        let mut out = String::from(AuthMetrics::HEADER);
        for (service, total) in &services {
            total.render_samples(service, &mut out);
        }
        drop(layers);
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for source in samples.iter().filter_map(Weak::upgrade) {
            source.render(&mut out);
        }
        out
    }

    /// `GET /metrics` of this registry.
    pub fn router(&self) -> Router {
        let registry = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let text = registry.render();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
    }
}

const FEED_HEADER: &str = "# HELP tokenmesh_feed_silence_seconds Seconds since a followed feed was last heard (a change or a heartbeat) on a stream replayed to its end; +Inf before the first.\n# TYPE tokenmesh_feed_silence_seconds gauge\n";

const FEED_POSITION_HEADER: &str = "# HELP tokenmesh_feed_position The last position of a followed feed applied here (0 before the first): replicas of a service behind their feed show a lower one.\n# TYPE tokenmesh_feed_position gauge\n";

/// Serves `registry`'s `/metrics`, and `routes` beside it (Auth's JWKS), on
/// `listener` until `shutdown`.
pub async fn serve_http(
    listener: TcpListener,
    registry: &Registry,
    routes: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes.unwrap_or_default().merge(registry.router());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
