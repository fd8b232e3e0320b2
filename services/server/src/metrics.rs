//! `/metrics`: the Prometheus text of the auth layers registered in one
//! [`Registry`], one series per service, outcome and reason. The binary makes
//! one registry per process and hands it to every server it starts, so each mesh
//! (and each test) counts only its own requests.

use std::{
    future::Future,
    sync::{Arc, Mutex, Weak},
};

use axum::{Router, http::header::CONTENT_TYPE, routing::get};
use tokenmesh_interceptor::AuthMetrics;
use tokio::net::TcpListener;

/// A service name and its layer's counters, weak so a stopped server's layer goes
/// away.
type Layers = Vec<(String, Weak<AuthMetrics>)>;

/// Samples a service exports beside its auth layer's counters (Auth's password
/// checks, its throttles): Prometheus text, `# HELP`/`# TYPE` lines included.
pub trait Samples: Send + Sync {
    /// Appends the samples to `out`.
    fn render(&self, out: &mut String);
}

/// The auth layers of the servers started with this registry, and the other
/// samples their services export.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    layers: Arc<Mutex<Layers>>,
    samples: Arc<Mutex<Vec<Weak<dyn Samples>>>>,
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

    /// Exposes `samples` while they live (held weakly, like the layers).
    pub fn register_samples(&self, samples: &Arc<dyn Samples>) {
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|samples| samples.strong_count() > 0);
        all.push(Arc::downgrade(samples));
    }

    /// The Prometheus text exposition of every live layer and sample source.
    pub fn render(&self) -> String {
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
