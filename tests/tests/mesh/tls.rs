//! Every service serves TLS (`--tls-cert`, `--tls-key`), requires client
//! certificates (`--tls-client-ca`), and calls its peers over TLS trusting
//! `--tls-ca` — with certificates generated here by rcgen.

use std::path::PathBuf;

use tokenmesh_proto::{
    auth::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    orders::v1::{PlaceOrderRequest, orders_service_client::OrdersServiceClient},
    products::v1::{ListProductsRequest, products_service_client::ProductsServiceClient},
};
use tokenmesh_tests::{
    Bearer, Mesh,
    pki::{authority, leaf},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA, a certificate for the services (also their client certificate), one
/// for a client, and a stranger's CA.
struct Pki {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: String,
    client: (String, String),
    stranger_ca: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = authority("tokenmesh test CA");
    let (server_cert, server_key) = leaf(&ca, &["localhost", "127.0.0.1"]);
    let client = leaf(&ca, &["alice-laptop"]);
    for (file, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server-key.pem", server_key),
    ] {
        std::fs::write(dir.path().join(file), pem).expect("write");
    }
    Pki {
        dir: dir.path().to_owned(),
        _dir: dir,
        ca: ca.pem(),
        client,
        stranger_ca: authority("someone else").pem(),
    }
}

async fn mesh(pki: &Pki) -> Mesh {
    Mesh::builder()
        .tls(
            &pki.dir.join("server.pem"),
            &pki.dir.join("server-key.pem"),
            Some(&pki.dir.join("ca.pem")),
            &pki.dir.join("ca.pem"),
        )
        .start()
        .await
}

async fn connect(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn services_serve_mutual_tls_and_call_each_other_over_it() {
    let pki = pki();
    let mesh = mesh(&pki).await;
    let auth = connect(mesh.auth_addr(), &pki.ca, Some(&pki.client))
        .await
        .expect("TLS to Auth");
    let token = AuthServiceClient::new(auth)
        .login(LoginRequest {
            username: "alice".into(),
            password: "alice-demo".into(),
        })
        .await
        .expect("login over TLS")
        .into_inner()
        .access_token;
    let products = connect(mesh.products_addr(), &pki.ca, Some(&pki.client))
        .await
        .expect("TLS to Products");
    // Products verifies the token with keys fetched from Auth over mutual TLS.
    ProductsServiceClient::with_interceptor(products, Bearer::token(&token))
        .list_products(ListProductsRequest::default())
        .await
        .expect("listed over TLS");
    // Orders asks Products over mutual TLS whether alice may order.
    let orders = connect(mesh.orders_addr(), &pki.ca, Some(&pki.client))
        .await
        .expect("TLS to Orders");
    OrdersServiceClient::with_interceptor(orders, Bearer::token(&token))
        .place_order(PlaceOrderRequest {
            product_id: "P-100".into(),
            quantity: 1,
            request_id: "tls-1".into(),
            entitlement_token: String::new(),
        })
        .await
        .expect("ordered over TLS");
    mesh.shutdown().await;
}

/// Whether a Login over `channel` (if it connected at all) goes through.
async fn login_works(channel: Result<Channel, tonic::transport::Error>) -> bool {
    let Ok(channel) = channel else {
        return false;
    };
    AuthServiceClient::new(channel)
        .login(LoginRequest {
            username: "alice".into(),
            password: "alice-demo".into(),
        })
        .await
        .is_ok()
}

#[tokio::test]
async fn clients_without_a_trusted_certificate_are_turned_away() {
    let pki = pki();
    let mesh = mesh(&pki).await;
    let addr = mesh.auth_addr();
    let plaintext = Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await;
    assert!(!login_works(plaintext).await, "plaintext accepted");
    assert!(
        !login_works(connect(addr, &pki.ca, None).await).await,
        "no client certificate accepted"
    );
    assert!(
        !login_works(connect(addr, &pki.stranger_ca, Some(&pki.client)).await).await,
        "server certificate trusted without its CA"
    );
    assert!(
        login_works(connect(addr, &pki.ca, Some(&pki.client)).await).await,
        "the trusted client still gets in"
    );
    mesh.shutdown().await;
}
