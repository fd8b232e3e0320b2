//! The admin calls the CLI is built on, on SQLite and on PostgreSQL: listing
//! users and entitlements a page at a time, and reactivating a user without
//! bringing back anything the deactivation ended.

use std::time::Duration;

use tokenmesh_proto::{
    auth::v1::{DeactivateUserRequest, ListUsersRequest, ReactivateUserRequest, User},
    products::v1::{Entitlement, EntitlementTerms, ListEntitlementsRequest},
};
use tokenmesh_tests::calls::{assert_status, login, refresh, with_bearer};
use tokenmesh_tests::{Mesh, MeshBuilder, ProductsClient, on_sqlite_and_postgres};
use tonic::Code;

/// How long a test waits for a revocation to reach Products and Orders: a bound
/// for one that never arrives, not a speed goal.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(60);

on_sqlite_and_postgres!(
    reactivation_lets_the_user_log_in_again_but_revives_no_old_token,
    admin_lists_users_a_page_at_a_time,
    admin_lists_entitlements_by_subject_and_product,
);

fn user(username: &str, scopes: &str, active: bool) -> User {
    User {
        username: username.into(),
        scopes: scopes.into(),
        active,
    }
}

async fn reactivation_lets_the_user_log_in_again_but_revives_no_old_token(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let admin = mesh.login("admin").await;
    let old = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    auth.deactivate_user(with_bearer(
        DeactivateUserRequest {
            username: "alice".into(),
        },
        &admin,
    ))
    .await
    .expect("deactivate");

    let reactivated = auth
        .reactivate_user(with_bearer(
            ReactivateUserRequest {
                username: "alice".into(),
            },
            &admin,
        ))
        .await
        .expect("reactivate")
        .into_inner();
    assert_eq!(reactivated, user("alice", "", true));

    // What the deactivation ended stays ended.
    for status in mesh
        .refusals_of(&old.access_token, REVOCATION_DEADLINE)
        .await
    {
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, "token revoked")
        );
    }
    assert_status(
        refresh(&mut auth, &old.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    // A new login works everywhere.
    let new = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login after reactivation");
    let (products, orders) = mesh.accepted_by(&new.access_token).await;
    products.expect("Products accepts the new token");
    orders.expect("Orders accepts the new token");
    refresh(&mut auth, &new.refresh_token)
        .await
        .expect("the new login refreshes");

    assert_status(
        auth.reactivate_user(with_bearer(
            ReactivateUserRequest {
                username: "nobody".into(),
            },
            &admin,
        ))
        .await,
        Code::NotFound,
        "user nobody not found",
    );
    assert_status(
        auth.reactivate_user(with_bearer(ReactivateUserRequest::default(), &admin))
            .await,
        Code::InvalidArgument,
        "username: required",
    );
    let bob = mesh.login("bob").await;
    assert_status(
        auth.reactivate_user(with_bearer(
            ReactivateUserRequest {
                username: "bob".into(),
            },
            &bob,
        ))
        .await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    mesh.shutdown().await;
}

async fn admin_lists_users_a_page_at_a_time(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let admin = mesh.login("admin").await;
    auth.deactivate_user(with_bearer(
        DeactivateUserRequest {
            username: "bob".into(),
        },
        &admin,
    ))
    .await
    .expect("deactivate");
    let list = |page_size: i32, page_token: String| ListUsersRequest {
        page_size,
        page_token,
    };

    let everyone = auth
        .list_users(with_bearer(list(0, String::new()), &admin))
        .await
        .expect("list")
        .into_inner();
    let expected = vec![
        user("admin", "admin", true),
        user("alice", "", true),
        user("bob", "", false),
    ];
    assert_eq!(
        (everyone.users, everyone.next_page_token.as_str()),
        (expected.clone(), "")
    );

    let mut paged = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = auth
            .list_users(with_bearer(list(2, token), &admin))
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        paged.extend(page.users);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((paged, pages), (expected, 2));

    assert_status(
        auth.list_users(with_bearer(list(-1, String::new()), &admin))
            .await,
        Code::InvalidArgument,
        "page_size: must not be negative",
    );
    assert_status(
        auth.list_users(with_bearer(list(0, "!".into()), &admin))
            .await,
        Code::InvalidArgument,
        "page_token: not a token this service issued",
    );
    let alice = mesh.login("alice").await;
    assert_status(
        auth.list_users(with_bearer(list(0, String::new()), &alice))
            .await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    mesh.shutdown().await;
}

fn listed(subject: &str, product_id: &str) -> (String, String, EntitlementTerms) {
    (
        subject.into(),
        product_id.into(),
        EntitlementTerms {
            actions: vec!["view".into(), "order".into()],
            max_quantity: 0,
        },
    )
}

fn without_time(entitlements: Vec<Entitlement>) -> Vec<(String, String, EntitlementTerms)> {
    entitlements
        .into_iter()
        .map(|e| {
            assert!(e.granted_at > 0, "granted_at is set: {e:?}");
            (e.subject, e.product_id, e.terms.expect("terms"))
        })
        .collect()
}

/// Every entitlement `subject`'s and to `product_id`, in one page.
async fn all(
    products: &mut ProductsClient,
    subject: &str,
    product_id: &str,
) -> Vec<(String, String, EntitlementTerms)> {
    let page = products
        .list_entitlements(ListEntitlementsRequest {
            subject: subject.into(),
            product_id: product_id.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.next_page_token, "");
    without_time(page.entitlements)
}

async fn admin_lists_entitlements_by_subject_and_product(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut products = mesh.products_as("admin").await;
    let list = |subject: &str, product_id: &str, page_size: i32, page_token: &str| {
        ListEntitlementsRequest {
            subject: subject.into(),
            product_id: product_id.into(),
            page_size,
            page_token: page_token.into(),
        }
    };
    assert_eq!(
        all(&mut products, "", "").await,
        vec![
            listed("alice", "P-100"),
            listed("alice", "P-101"),
            listed("alice", "P-102"),
            listed("bob", "P-101"),
        ]
    );
    assert_eq!(
        all(&mut products, "alice", "").await,
        vec![
            listed("alice", "P-100"),
            listed("alice", "P-101"),
            listed("alice", "P-102"),
        ]
    );
    assert_eq!(
        all(&mut products, "", "P-101").await,
        vec![listed("alice", "P-101"), listed("bob", "P-101")]
    );
    assert_eq!(
        all(&mut products, "bob", "P-101").await,
        vec![listed("bob", "P-101")]
    );
    assert_eq!(all(&mut products, "carol", "").await, vec![]);

    // Pages of one walk the same list, across the subject boundary.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = products
            .list_entitlements(list("", "", 1, &token))
            .await
            .expect("page")
            .into_inner();
        paged.extend(without_time(page.entitlements));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged.len(), 4);
    assert_eq!(paged, all(&mut products, "", "").await);

    assert_status(
        products.list_entitlements(list("", "", 0, "!")).await,
        Code::InvalidArgument,
        "page_token: not a token this service issued",
    );
    // A token of another list is refused, not misread.
    let users_token = tokenmesh_server::paging::encode_token("alice");
    assert_status(
        products
            .list_entitlements(list("", "", 0, &users_token))
            .await,
        Code::InvalidArgument,
        "page_token: not a token this service issued",
    );
    let mut as_alice = mesh.products_as("alice").await;
    assert_status(
        as_alice.list_entitlements(list("alice", "", 0, "")).await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn a_subject_too_long_to_list_is_refused() {
    let mesh = Mesh::start().await;
    let mut products = mesh.products_as("admin").await;
    let status = products
        .list_entitlements(ListEntitlementsRequest {
            subject: "s".repeat(10_000),
            ..Default::default()
        })
        .await
        .expect_err("too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("subject: "),
        "{}",
        status.message()
    );
    mesh.shutdown().await;
}
