//! `--otlp-endpoint`: one `PlaceOrder` is one trace across Orders, Auth (the
//! token exchange) and Products (`CheckEntitlement`), exported over OTLP/gRPC
//! to a collector — here a tonic server of the collector's `TraceService`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::{Span, span::SpanKind},
};
use tokenmesh_proto::orders::v1::EntitlementSource;
use tokenmesh_tests::{Bearer, CHILD_DEADLINE, Mesh, eventually_or, order, up_process::UpProcess};
use tonic::{
    Request, Response, Status,
    transport::{Server, server::TcpIncoming},
};

const PLACE_ORDER: &str = "/tokenmesh.orders.v1.OrdersService/PlaceOrder";
const EXCHANGE_TOKEN: &str = "/tokenmesh.auth.v1.AuthService/ExchangeToken";
const CHECK_ENTITLEMENT: &str = "/tokenmesh.products.v1.ProductsService/CheckEntitlement";

/// Every span exported to it, in arrival order.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        self.0.lock().expect("spans").extend(spans);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves it on a free loopback port, for the test's lifetime.
    async fn start() -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collector = Self::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        (collector, addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().expect("spans").clone()
    }
}

/// The one span named `name`, if exactly one arrived.
fn one<'a>(spans: &'a [Span], name: &str) -> Option<&'a Span> {
    match spans
        .iter()
        .filter(|span| span.name == name)
        .collect::<Vec<_>>()[..]
    {
        [span] => Some(span),
        _ => None,
    }
}

/// The names of `span`'s ancestors in its trace, nearest first, leaving out
/// the auth layer's span between each request span and its handler.
fn ancestors(spans: &[Span], span: &Span) -> Vec<String> {
    let mut names = Vec::new();
    let mut parent = span.parent_span_id.clone();
    while !parent.is_empty() {
        let Some(next) = spans
            .iter()
            .find(|s| s.span_id == parent && s.trace_id == span.trace_id)
        else {
            names.push("<not exported>".to_owned());
            break;
        };
        if next.name != "auth" {
            names.push(next.name.clone());
        }
        parent = next.parent_span_id.clone();
    }
    names
}

#[tokio::test]
async fn one_order_is_one_trace_across_orders_auth_and_products() {
    let (collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    // Entitlement by RPC, never cached: the order calls Products with a token
    // exchanged at Auth. A short batch delay: spans arrive while the test waits.
    let mut up = UpProcess::start(
        &[
            "--otlp-endpoint",
            &endpoint,
            "--entitlement-sources",
            "rpc",
            "--rpc-cache-ttl",
            "0s",
        ],
        &[("RUST_LOG", "info"), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let mut auth = tokenmesh_proto::auth::v1::auth_service_client::AuthServiceClient::new(
        Mesh::channel(up.auth).await,
    );
    let token = tokenmesh_tests::calls::login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login")
        .access_token;
    let mut orders =
        tokenmesh_proto::orders::v1::orders_service_client::OrdersServiceClient::with_interceptor(
            Mesh::channel(up.orders).await,
            Bearer::token(&token),
        );
    let placed = orders
        .place_order(order("P-100", 1, "traced-1", ""))
        .await
        .expect("order placed")
        .into_inner();
    assert_eq!(placed.entitlement_source(), EntitlementSource::Rpc);

    let names = ["place_order", "exchange_token", "check_entitlement"];
    let context = || format!(": spans received: {:#?}\n{}", collector.spans(), up.log());
    let (spans, _) = eventually_or(CHILD_DEADLINE, context, || {
        let spans = collector.spans();
        let all = [PLACE_ORDER, EXCHANGE_TOKEN, CHECK_ENTITLEMENT]
            .iter()
            .chain(&names)
            .all(|name| spans.iter().any(|span| span.name == *name));
        std::future::ready(all.then_some(spans))
    })
    .await;
    assert!(up.terminate().await.success(), "{}", up.log());

    let place = one(&spans, PLACE_ORDER).expect("one PlaceOrder span");
    assert!(
        place.parent_span_id.is_empty(),
        "the client sent no trace: a root"
    );
    for (request, handler) in [
        (PLACE_ORDER, "place_order"),
        (EXCHANGE_TOKEN, "exchange_token"),
        (CHECK_ENTITLEMENT, "check_entitlement"),
    ] {
        let request_span = one(&spans, request).unwrap_or_else(|| panic!("one {request} span"));
        assert_eq!(request_span.kind, SpanKind::Server as i32, "{request}");
        assert_eq!(
            request_span.trace_id, place.trace_id,
            "{request} in the order's trace"
        );
        let handler_span = one(&spans, handler).unwrap_or_else(|| panic!("one {handler} span"));
        assert_eq!(
            ancestors(&spans, handler_span).first().map(String::as_str),
            Some(request)
        );
    }
    // Both hops out of Orders are children of its handler's span.
    for (hop, handler) in [
        (EXCHANGE_TOKEN, "exchange_token"),
        (CHECK_ENTITLEMENT, "check_entitlement"),
    ] {
        let handler_span = one(&spans, handler).expect("handler span");
        assert_eq!(
            ancestors(&spans, handler_span),
            [hop, "place_order", PLACE_ORDER],
            "{handler}'s ancestors"
        );
    }
}
