//! The names services agree on — token types, audiences, scopes, actions — spelled
//! once. Access rules in `proto/` name the same scopes; a test checks they match.

/// `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// `typ` of Products' entitlement grants.
pub const GRANT_TOKEN_TYPE: &str = "entitlement+jwt";
/// `token_type` of every token response.
pub const BEARER: &str = "Bearer";

/// Audiences: each service's own name, and the id of its service client.
pub mod audience {
    /// Auth.
    pub const AUTH: &str = "auth";
    /// Products.
    pub const PRODUCTS: &str = "products";
    /// Orders.
    pub const ORDERS: &str = "orders";
    /// Every service a user's access token is for.
    pub const USER_TOKEN: [&str; 3] = [AUTH, PRODUCTS, ORDERS];
}

/// Scopes, as the access rules in `proto/` name them.
pub mod scope {
    /// Administrators: users, entitlements, key rotation.
    pub const ADMIN: &str = "admin";
    /// Exchange a user's token for a downstream one (RFC 8693).
    pub const TOKEN_EXCHANGE: &str = "token:exchange";
    /// Follow Auth's revocation feed.
    pub const REVOCATIONS_READ: &str = "revocations:read";
    /// Ask Products whether a subject is entitled.
    pub const ENTITLEMENTS_CHECK: &str = "entitlements:check";
    /// Follow Products' entitlement feed.
    pub const ENTITLEMENTS_WATCH: &str = "entitlements:watch";
}

/// Actions a v2 entitlement grants on a product.
pub mod action {
    /// See the product.
    pub const VIEW: &str = "view";
    /// Order it.
    pub const ORDER: &str = "order";
    /// What an entitlement without explicit actions grants.
    pub const DEFAULT: [&str; 2] = [VIEW, ORDER];
}

/// `client_id` of tokens minted by a user's login.
pub const LOGIN_CLIENT_ID: &str = "tokenmesh-login";
