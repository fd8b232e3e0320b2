//! `/metrics`: the Prometheus text of every auth layer [`crate::serve`] started in
//! this process, one series per service and outcome and reason. Served on the
//! HTTP listener (`--http-addr`) beside Auth's JWKS, or alone for Products and
//! Orders.

use std::{
    future::Future,
    sync::{Arc, Mutex, Weak},
};

use axum::{Router, http::header::CONTENT_TYPE, routing::get};
use tokenmesh_interceptor::AuthMetrics;
use tokio::net::TcpListener;

/// The layers registered so far: weak, so a stopped server's layer goes away.
static LAYERS: Mutex<Vec<(String, Weak<AuthMetrics>)>> = Mutex::new(Vec::new());

/// Exposes `metrics` under `service` (several layers of one service are summed).
pub fn register(service: &str, metrics: &Arc<AuthMetrics>) {
    let mut layers = LAYERS.lock().unwrap_or_else(|e| e.into_inner());
    layers.retain(|(_, layer)| layer.strong_count() > 0);
    layers.push((service.to_owned(), Arc::downgrade(metrics)));
}

/// The Prometheus text exposition of every live layer.
pub fn render() -> String {
    let layers = LAYERS.lock().unwrap_or_else(|e| e.into_inner());
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
    out
}

/// `GET /metrics`.
pub fn router() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], render()) }),
    )
}

/// Serves `/metrics`, and `routes` beside it (Auth's JWKS), on `listener` until
/// `shutdown`.
pub async fn serve_http(
    listener: TcpListener,
    routes: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes.unwrap_or_default().merge(router());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
