//! Issue 10, item 6: token exchange only narrows. The audit's escalation — an
//! admin's token exchanged by Orders' client, then CreateProduct on Products —
//! and its variants (audience `auth`, re-exchange), through real sockets on
//! SQLite and PostgreSQL (delegations are stored by Auth).

use serde_json::json;
use tokenmesh_proto::{
    auth::v1::{ExchangeTokenRequest, IssueServiceTokenRequest},
    products::v1::{CheckEntitlementRequest, CreateProductRequest},
};
use tokenmesh_tests::{
    Bearer, Mesh, MeshBuilder, Minter, bearer_value, claims_of, client_secret,
    on_sqlite_and_postgres,
};
use tonic::{Code, Request, Status};

on_sqlite_and_postgres!(
    an_admins_token_exchanged_by_orders_cannot_create_a_product,
    exchange_refuses_audience_auth,
    exchange_refuses_a_subject_token_that_already_has_an_actor,
);

/// Orders' own client-credentials token for Auth: what lets it call ExchangeToken.
async fn orders_actor(mesh: &Mesh) -> String {
    mesh.auth()
        .await
        .issue_service_token(IssueServiceTokenRequest {
            client_id: "orders".into(),
            client_secret: client_secret(mesh, "orders"),
            audience: "auth".into(),
        })
        .await
        .expect("Orders' service token")
        .into_inner()
        .access_token
}

/// `subject` exchanged for `audience` by `actor`.
async fn exchange(
    mesh: &Mesh,
    actor: &str,
    subject: &str,
    audience: &str,
) -> Result<tokenmesh_proto::auth::v1::TokenResponse, Status> {
    let mut request = Request::new(ExchangeTokenRequest {
        subject_token: subject.into(),
        audience: audience.into(),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer_value(actor));
    mesh.auth()
        .await
        .exchange_token(request)
        .await
        .map(|response| response.into_inner())
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    let status = result.expect_err(message);
    assert_eq!((status.code(), status.message()), (code, message));
}

async fn create_product(
    products: &mut tokenmesh_tests::ProductsClient,
    id: &str,
) -> Result<(), Status> {
    products
        .create_product(CreateProductRequest {
            id: id.into(),
            name: "escalated".into(),
            price_cents: 1,
            description: String::new(),
        })
        .await
        .map(drop)
}

async fn an_admins_token_exchanged_by_orders_cannot_create_a_product(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let actor = orders_actor(&mesh).await;
    let admin = mesh.login("admin").await;
    assert_eq!(claims_of(&admin)["scope"], "admin");

    let exchanged = exchange(&mesh, &actor, &admin, "products")
        .await
        .expect("Orders may exchange a user's token for Products");
    let mut products = mesh.products(Bearer::token(&exchanged.access_token)).await;
    assert_status(
        create_product(&mut products, "P-ESCALATED").await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    assert_eq!(exchanged.scope, "", "Orders delegates no scope to Products");
    let claims = claims_of(&exchanged.access_token);
    assert_eq!(
        (
            claims["sub"].clone(),
            claims["scope"].clone(),
            claims["act"].clone()
        ),
        (json!("admin"), json!(""), json!({"sub": "orders"}))
    );
    // What Orders needs the exchanged token for still works.
    products
        .check_entitlement(CheckEntitlementRequest {
            subject: "admin".into(),
            product_id: "P-100".into(),
        })
        .await
        .expect("CheckEntitlement with the exchanged token");
    // And the admin's own token still can.
    let mut as_admin = mesh.products(Bearer::token(&admin)).await;
    create_product(&mut as_admin, "P-BY-ADMIN")
        .await
        .expect("the admin's own token creates a product");
    mesh.shutdown().await;
}

async fn exchange_refuses_audience_auth(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let actor = orders_actor(&mesh).await;
    let admin = mesh.login("admin").await;
    // The audit's chain: admin → auth (as Orders), then → products.
    assert_status(
        exchange(&mesh, &actor, &admin, "auth").await,
        Code::InvalidArgument,
        "audience: an exchanged token is never issued for auth",
    );
    mesh.shutdown().await;
}

async fn exchange_refuses_a_subject_token_that_already_has_an_actor(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let actor = orders_actor(&mesh).await;
    // What an exchange for `auth` used to yield: Auth's own signature, audience
    // auth, an actor, the admin's scope.
    let mut claims = Minter::access_claims("admin");
    claims["aud"] = json!(["auth"]);
    claims["scope"] = json!("admin");
    claims["client_id"] = json!("orders");
    claims["act"] = json!({"sub": "orders"});
    let exchanged_once = mesh.auth_minter().access_token(&claims);
    assert_status(
        exchange(&mesh, &actor, &exchanged_once, "products").await,
        Code::InvalidArgument,
        "subject_token: already exchanged (has `act`); exchange the user's own token",
    );
    mesh.shutdown().await;
}
