//! The grpcurl walkthrough `up --demo` prints: ready-to-paste commands whose
//! transport flags match the mesh's (TLS files or `-plaintext`), needing nothing
//! but grpcurl and a POSIX shell.

use std::{net::SocketAddr, path::Path};

use tokenmesh_server::args::{PeerTlsArgs, TlsArgs};

/// grpcurl's transport flags for a mesh served with `tls`: the CA that signed
/// its certificate (`--tls-ca`), and the services' own certificate as the
/// client's when they require one (`--tls-client-ca`); `-plaintext` without TLS.
pub fn grpcurl_flags(tls: &TlsArgs, peer_tls: &PeerTlsArgs) -> String {
    let Some(cert) = &tls.tls_cert else {
        return "-plaintext".to_owned();
    };
    let mut flags = Vec::new();
    if let Some(ca) = &peer_tls.tls_ca {
        flags.push(format!("-cacert {}", quoted(ca)));
    }
    if let (Some(_), Some(key)) = (&tls.tls_client_ca, &tls.tls_key) {
        flags.push(format!("-cert {} -key {}", quoted(cert), quoted(key)));
    }
    flags.join(" ")
}

/// A path as one shell word.
fn quoted(path: &Path) -> String {
    let path = path.display().to_string();
    if path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        path
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

/// The demo flow as shell commands. Tokens are cut from grpcurl's JSON with
/// `sed`, which every machine has (jq is not).
pub fn walkthrough(flags: &str, addrs: [SocketAddr; 4]) -> String {
    let [auth, products, orders, http] = addrs;
    let g = format!("grpcurl {flags}");
    format!(
        r#"
tokenmesh is up: auth {auth}, products {products}, orders {orders}, http {http}
Demo users: alice/alice-demo, bob/bob-demo, admin/admin-demo. Paste into a shell (needs grpcurl):

# 1. log in as alice
TOKEN=$({g} -d '{{"username":"alice","password":"alice-demo"}}' {auth} tokenmesh.auth.v1.AuthService/Login | sed -n 's/.*"accessToken": "\([^"]*\)".*/\1/p')

# 2. list alice's products, keeping the entitlement grant
{g} -H "authorization: Bearer $TOKEN" -d '{{}}' {products} tokenmesh.products.v1.ProductsService/ListProducts
GRANT=$({g} -H "authorization: Bearer $TOKEN" -d '{{}}' {products} tokenmesh.products.v1.ProductsService/ListProducts | sed -n 's/.*"entitlementToken": "\([^"]*\)".*/\1/p')

# 3. order P-100 with the grant (entitlement_source GRANT); run it twice: same order
{g} -H "authorization: Bearer $TOKEN" -d '{{"product_id":"P-100","quantity":1,"request_id":"demo-1","entitlement_token":"'"$GRANT"'"}}' {orders} tokenmesh.orders.v1.OrdersService/PlaceOrder

# 4. order P-101 without a grant: Orders' replica of Products' entitlements decides (REPLICA)
{g} -H "authorization: Bearer $TOKEN" -d '{{"product_id":"P-101","quantity":2,"request_id":"demo-2"}}' {orders} tokenmesh.orders.v1.OrdersService/PlaceOrder

# 5. P-104 is not alice's: PermissionDenied
{g} -H "authorization: Bearer $TOKEN" -d '{{"product_id":"P-104","quantity":1,"request_id":"demo-3"}}' {orders} tokenmesh.orders.v1.OrdersService/PlaceOrder

# 6. no token: Unauthenticated, with a typed google.rpc.ErrorInfo
{g} -d '{{}}' {orders} tokenmesh.orders.v1.OrdersService/ListOrders

# 7. alice's orders
{g} -H "authorization: Bearer $TOKEN" -d '{{}}' {orders} tokenmesh.orders.v1.OrdersService/ListOrders

# Every service lists itself, health and reflection:
{g} {orders} list
"#
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tls(cert: bool, client_ca: bool) -> TlsArgs {
        TlsArgs {
            tls_cert: cert.then(|| PathBuf::from("/d/mesh cert.pem")),
            tls_key: cert.then(|| PathBuf::from("/d/mesh.key")),
            tls_client_ca: client_ca.then(|| PathBuf::from("/d/ca.pem")),
        }
    }

    fn ca(ca: bool) -> PeerTlsArgs {
        PeerTlsArgs {
            tls_ca: ca.then(|| PathBuf::from("/d/ca.pem")),
        }
    }

    #[test]
    fn grpcurl_flags_match_the_transport() {
        assert_eq!(grpcurl_flags(&tls(false, false), &ca(false)), "-plaintext");
        assert_eq!(
            grpcurl_flags(&tls(true, false), &ca(true)),
            "-cacert /d/ca.pem"
        );
        assert_eq!(
            grpcurl_flags(&tls(true, true), &ca(true)),
            "-cacert /d/ca.pem -cert '/d/mesh cert.pem' -key /d/mesh.key"
        );
    }

    #[test]
    fn every_printed_command_uses_the_flags_and_no_jq() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let text = walkthrough("-cacert /d/ca.pem", [addr; 4]);
        let commands: Vec<&str> = text.lines().filter(|l| l.contains("grpcurl ")).collect();
        assert_eq!(commands.len(), 9, "{text}");
        for line in commands {
            assert!(line.contains("grpcurl -cacert /d/ca.pem "), "{line}");
        }
        assert!(
            !text.contains("-plaintext") && !text.contains("jq"),
            "{text}"
        );
    }
}
