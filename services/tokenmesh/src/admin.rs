//! The admin CLI: `tokenmesh users|entitlements|keys rotate|token decode`, thin
//! clients of the admin RPCs. Refusals are printed as sentences and mapped to
//! the documented exit codes ([`AdminError::exit_code`]).

use std::{
    fmt::Write as _,
    io::{self, BufRead, IsTerminal, Read, Write},
    path::PathBuf,
    time::{Duration, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use clap::{Args, Subcommand};
use tokenmesh_interceptor::{KeyStore, Verifier, VerifierConfig};
use tokenmesh_proto::{
    auth::v1::{
        CreateUserRequest, DeactivateUserRequest, ListUsersRequest, LoginRequest,
        ReactivateUserRequest, RotateSigningKeyRequest, User,
        auth_service_client::AuthServiceClient,
    },
    names::audience,
    products::v1::{
        EntitlementRequest, ListEntitlementsRequest, products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_server::{
    Addr, Caller, GrpcJwksSource,
    args::{AuthIssuerArgs, PeerTlsArgs, TlsArgs},
};
use tonic::{
    Code, Request, Status,
    metadata::AsciiMetadataValue,
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt;

/// The longest token file or password read.
const MAX_SECRET_BYTES: u64 = 16 * 1024;
/// How long to wait for a connection before saying the mesh cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an admin command failed, and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The command line or its inputs (token file, password) are unusable: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The service could not be reached: exit 3.
    #[error("cannot connect to {service} at {addr}: {reason}")]
    Connect {
        /// Which service.
        service: &'static str,
        /// Where.
        addr: String,
        /// Why, as a sentence.
        reason: String,
    },
    /// The service answered with a refusal or a failure: exit 1.
    #[error("{action}: {}", describe(.status))]
    Refused {
        /// What was attempted, e.g. `deactivating bob`.
        action: String,
        /// The answer.
        status: Box<Status>,
    },
    /// The login was refused: exit 1.
    #[error(
        "logging in as {username}: {message}. Check the username and the password (TOKENMESH_PASSWORD, or typed when asked)."
    )]
    LoginRefused {
        /// Who.
        username: String,
        /// Auth's answer.
        message: String,
    },
    /// A token did not verify: exit 1.
    #[error("the token does not verify: {0}")]
    Invalid(String),
    /// Writing the output failed: exit 1.
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

impl AdminError {
    /// The exit code documented in the README: 1 refused or failed, 2 usage,
    /// 3 cannot connect.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Usage(_) => 2,
            AdminError::Connect { .. } => 3,
            AdminError::Refused { status, .. } if unreachable(status) => 3,
            AdminError::Refused { .. }
            | AdminError::LoginRefused { .. }
            | AdminError::Invalid(_)
            | AdminError::Output(_) => 1,
        }
    }
}

/// Whether `status` says the service was never reached (the channel could not
/// connect), rather than that it answered.
fn unreachable(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.metadata().is_empty()
}

/// `status` as a sentence: the server's message, what its typed reason means
/// for the person at the terminal, and what to do.
fn describe(status: &Status) -> String {
    let message = status.message().trim_end_matches('.');
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    let hint = match (status.code(), reason.as_str()) {
        (_, "TOKEN_EXPIRED") => {
            " The admin token has expired: log in again with --username, or give a fresh \
             token in TOKENMESH_TOKEN or --token-file."
        }
        (Code::Unauthenticated, _) => {
            " Log in with --username, or give an admin token in TOKENMESH_TOKEN or --token-file."
        }
        (Code::PermissionDenied, "INSUFFICIENT_SCOPE") => " Log in as a user with scope `admin`.",
        (Code::ResourceExhausted, _) => " Wait, then try again.",
        (Code::Unavailable, _) => " The service is unavailable: try again shortly.",
        _ => "",
    };
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .map(|delay| format!(" Retry in {} s.", delay.as_secs().max(1)))
        .unwrap_or_default();
    format!("{message}.{hint}{retry}")
}

/// Where the admin commands find the mesh and how they authenticate.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// Auth's gRPC address (`host:port` or `http(s)://host:port`): where admins
    /// log in, and what `users`, `keys rotate` and `token decode` call.
    #[arg(long, env = "TOKENMESH_AUTH_URL", default_value = "127.0.0.1:50051")]
    pub auth_url: Addr,
    /// Call over TLS, trusting this CA (PEM).
    #[command(flatten)]
    pub tls: PeerTlsArgs,
    /// Read the admin access token from this file. Without it, the token is read
    /// from `TOKENMESH_TOKEN`, or got by logging in as `--username`.
    #[arg(long, env = "TOKENMESH_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Log in as this user; the password is read from `TOKENMESH_PASSWORD`, or
    /// asked for (never a flag: argv is visible to every local user).
    #[arg(
        long = "username",
        env = "TOKENMESH_USERNAME",
        value_name = "USER",
        conflicts_with = "token_file"
    )]
    pub login: Option<String>,
}

/// `tokenmesh users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from `TOKENMESH_NEW_PASSWORD`, or asked for.
    Create {
        /// The login name.
        username: String,
        /// Space-separated scopes, e.g. `admin`.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Deactivate a user: their logins end and every token issued to them is revoked.
    Deactivate {
        /// The login name.
        username: String,
        /// Connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Let a deactivated user log in again; tokens the deactivation revoked stay revoked.
    Reactivate {
        /// The login name.
        username: String,
        /// Connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List every user.
    List {
        /// Connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Where Products is, for `tokenmesh entitlements …`.
#[derive(Debug, Clone, Args)]
pub struct ProductsConnectArgs {
    /// Products' gRPC address (`host:port` or `http(s)://host:port`).
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_URL",
        default_value = "127.0.0.1:50052",
        help_heading = "Connection"
    )]
    pub products_url: Addr,
    /// Auth, and how to authenticate.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `tokenmesh entitlements …`.
#[derive(Debug, Subcommand)]
pub enum EntitlementsCommand {
    /// Entitle a subject to a product (view and order, no limit).
    Grant {
        /// Who.
        subject: String,
        /// The product id.
        product_id: String,
        /// Connection.
        #[command(flatten)]
        connect: ProductsConnectArgs,
    },
    /// Withdraw an entitlement; grants issued before it stop working too.
    Revoke {
        /// Who.
        subject: String,
        /// The product id.
        product_id: String,
        /// Connection.
        #[command(flatten)]
        connect: ProductsConnectArgs,
    },
    /// List entitlements: every one, or one subject's, or one product's.
    List {
        /// Only this subject's.
        #[arg(long)]
        subject: Option<String>,
        /// Only to this product.
        #[arg(long)]
        product: Option<String>,
        /// Connection.
        #[command(flatten)]
        connect: ProductsConnectArgs,
    },
}

/// `tokenmesh token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Verify an access token against Auth's published keys (signature, issuer,
    /// audience, type, expiry; not revocation) and print its header, claims,
    /// claims version and times.
    Decode(DecodeArgs),
}

/// `tokenmesh token decode`.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// The token; `-` reads it from standard input.
    pub token: String,
    /// `iss` the token must carry.
    #[command(flatten)]
    pub issuer: AuthIssuerArgs,
    /// Auth's gRPC address (`host:port` or `http(s)://host:port`), whose JWKS
    /// verifies the token.
    #[arg(long, env = "TOKENMESH_AUTH_URL", default_value = "127.0.0.1:50051")]
    pub auth_url: Addr,
    /// Call over TLS, trusting this CA (PEM).
    #[command(flatten)]
    pub tls: PeerTlsArgs,
}

/// A channel to `service` at `addr`, connected now so that an unreachable
/// service is told apart from a refusal.
async fn connect(
    service: &'static str,
    addr: &Addr,
    tls: &PeerTlsArgs,
) -> Result<Channel, AdminError> {
    let usage = |error: &dyn std::fmt::Display| AdminError::Usage(error.to_string());
    let tls = TlsArgs::default().client(tls).map_err(|e| usage(&e))?;
    let url = addr.url(tls.is_some());
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| usage(&e))?;
    if url.starts_with("https:") {
        endpoint = endpoint
            .tls_config(tls.unwrap_or_default())
            .map_err(|e| usage(&e))?;
    }
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|error| AdminError::Connect {
            service,
            addr: addr.to_string(),
            reason: root_cause(&error),
        })
}

/// The innermost cause of `error`: "Connection refused (os error 111)", not
/// "transport error".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// What `action` answered, or the refusal as an [`AdminError`].
fn answered<T>(action: impl Into<String>, result: Result<T, Status>) -> Result<T, AdminError> {
    result.map_err(|status| AdminError::Refused {
        action: action.into(),
        status: Box::new(status),
    })
}

/// A secret from `variable`, else read from standard input (without echo when
/// it is a terminal), after `prompt`.
fn secret(variable: &str, prompt: &str) -> Result<String, AdminError> {
    if let Ok(value) = std::env::var(variable) {
        return Ok(value);
    }
    let stdin = io::stdin();
    let value = if stdin.is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|e| AdminError::Usage(format!("reading the password: {e}")))?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .take(MAX_SECRET_BYTES)
            .read_line(&mut line)
            .map_err(|e| AdminError::Usage(format!("reading the password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if value.is_empty() {
        return Err(AdminError::Usage(format!(
            "no password: set {variable} or type it when asked"
        )));
    }
    Ok(value)
}

/// The admin access token: from `--token-file`, `TOKENMESH_TOKEN`, or a login.
async fn admin_token(connect: &ConnectArgs) -> Result<String, AdminError> {
    if let Some(path) = &connect.token_file {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_SECRET_BYTES).read_to_string(&mut text))
            .map_err(|e| {
                AdminError::Usage(format!("reading the token file {}: {e}", path.display()))
            })?;
        return Ok(text.trim().to_owned());
    }
    if let Some(username) = &connect.login {
        let password = secret("TOKENMESH_PASSWORD", &format!("Password for {username}: "))?;
        let mut auth = AuthServiceClient::new(connect_auth(connect).await?);
        let request = LoginRequest {
            username: username.clone(),
            password,
        };
        return match auth.login(request).await {
            Ok(response) => Ok(response.into_inner().access_token),
            Err(status) if status.code() == Code::Unauthenticated => {
                Err(AdminError::LoginRefused {
                    username: username.clone(),
                    message: status.message().trim_end_matches('.').to_owned(),
                })
            }
            Err(status) => answered(format!("logging in as {username}"), Err(status)),
        };
    }
    match std::env::var("TOKENMESH_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
        _ => Err(AdminError::Usage(
            "no credentials: set TOKENMESH_TOKEN, or give --token-file or --username".into(),
        )),
    }
}

async fn connect_auth(connect: &ConnectArgs) -> Result<Channel, AdminError> {
    self::connect("Auth", &connect.auth_url, &connect.tls).await
}

/// `message` with `authorization: Bearer <token>`.
fn authorized<T>(message: T, bearer: &AsciiMetadataValue) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

/// The `authorization` value of `token`.
fn bearer(token: &str) -> Result<AsciiMetadataValue, AdminError> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| AdminError::Usage("the token is not a printable ASCII string".into()))
}

/// Auth, and the admin's bearer value.
async fn auth_client(
    connect: &ConnectArgs,
) -> Result<(AuthServiceClient<Channel>, AsciiMetadataValue), AdminError> {
    let token = admin_token(connect).await?;
    Ok((
        AuthServiceClient::new(connect_auth(connect).await?),
        bearer(&token)?,
    ))
}

/// Products, and the admin's bearer value.
async fn products_client(
    connect: &ProductsConnectArgs,
) -> Result<(ProductsServiceClient<Channel>, AsciiMetadataValue), AdminError> {
    let token = admin_token(&connect.connect).await?;
    let channel = self::connect("Products", &connect.products_url, &connect.connect.tls).await?;
    Ok((ProductsServiceClient::new(channel), bearer(&token)?))
}

fn scopes_shown(scopes: &str) -> &str {
    if scopes.is_empty() { "none" } else { scopes }
}

/// Runs `tokenmesh users …`.
pub async fn users(command: UsersCommand, out: &mut impl Write) -> Result<(), AdminError> {
    match command {
        UsersCommand::Create {
            username,
            scopes,
            connect,
        } => {
            let (mut auth, bearer) = auth_client(&connect).await?;
            let password = secret(
                "TOKENMESH_NEW_PASSWORD",
                &format!("New password for {username}: "),
            )?;
            let user = answered(
                format!("creating user {username}"),
                auth.create_user(authorized(
                    CreateUserRequest {
                        username: username.clone(),
                        password,
                        scopes,
                    },
                    &bearer,
                ))
                .await,
            )?
            .into_inner();
            writeln!(
                out,
                "created user {} (scopes: {})",
                user.username,
                scopes_shown(&user.scopes)
            )?;
        }
        UsersCommand::Deactivate { username, connect } => {
            let (mut auth, bearer) = auth_client(&connect).await?;
            let request = DeactivateUserRequest {
                username: username.clone(),
            };
            answered(
                format!("deactivating user {username}"),
                auth.deactivate_user(authorized(request, &bearer)).await,
            )?;
            writeln!(
                out,
                "deactivated user {username}: their logins ended and every token issued to them is revoked"
            )?;
        }
        UsersCommand::Reactivate { username, connect } => {
            let (mut auth, bearer) = auth_client(&connect).await?;
            let request = ReactivateUserRequest {
                username: username.clone(),
            };
            answered(
                format!("reactivating user {username}"),
                auth.reactivate_user(authorized(request, &bearer)).await,
            )?;
            writeln!(
                out,
                "reactivated user {username}: they can log in again (tokens revoked before stay revoked)"
            )?;
        }
        UsersCommand::List { connect } => {
            let (mut auth, bearer) = auth_client(&connect).await?;
            let mut users: Vec<User> = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = ListUsersRequest {
                    page_size: 100,
                    page_token,
                };
                let page = answered(
                    "listing users",
                    auth.list_users(authorized(request, &bearer)).await,
                )?
                .into_inner();
                users.extend(page.users);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let rows = users.iter().map(|user| {
                [
                    user.username.clone(),
                    if user.active { "yes" } else { "no" }.to_owned(),
                    scopes_shown(&user.scopes).to_owned(),
                ]
            });
            write_table(out, ["USERNAME", "ACTIVE", "SCOPES"], rows)?;
        }
    }
    Ok(())
}

/// Runs `tokenmesh entitlements …`.
pub async fn entitlements(
    command: EntitlementsCommand,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match command {
        EntitlementsCommand::Grant {
            subject,
            product_id,
            connect,
        } => change_entitlement(&connect, true, &subject, &product_id, out).await?,
        EntitlementsCommand::Revoke {
            subject,
            product_id,
            connect,
        } => change_entitlement(&connect, false, &subject, &product_id, out).await?,
        EntitlementsCommand::List {
            subject,
            product,
            connect,
        } => {
            let (mut products, bearer) = products_client(&connect).await?;
            let mut rows = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = ListEntitlementsRequest {
                    subject: subject.clone().unwrap_or_default(),
                    product_id: product.clone().unwrap_or_default(),
                    page_size: 100,
                    page_token,
                };
                let page = answered(
                    "listing entitlements",
                    products
                        .list_entitlements(authorized(request, &bearer))
                        .await,
                )?
                .into_inner();
                for entitlement in page.entitlements {
                    let terms = entitlement.terms.unwrap_or_default();
                    rows.push([
                        entitlement.subject,
                        entitlement.product_id,
                        terms.actions.join(","),
                        match terms.max_quantity {
                            0 => "no limit".to_owned(),
                            n => n.to_string(),
                        },
                        rfc3339(entitlement.granted_at),
                    ]);
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            write_table(
                out,
                [
                    "SUBJECT",
                    "PRODUCT",
                    "ACTIONS",
                    "MAX_QUANTITY",
                    "GRANTED_AT",
                ],
                rows,
            )?;
        }
    }
    Ok(())
}

/// Grants (`grant`) or revokes `subject`'s entitlement to `product_id`, and
/// says whether that changed anything.
async fn change_entitlement(
    connect: &ProductsConnectArgs,
    grant: bool,
    subject: &str,
    product_id: &str,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let (mut products, bearer) = products_client(connect).await?;
    let request = authorized(
        EntitlementRequest {
            subject: subject.to_owned(),
            product_id: product_id.to_owned(),
        },
        &bearer,
    );
    let (action, result) = if grant {
        let action = format!("granting {subject} product {product_id}");
        (action, products.grant_entitlement(request).await)
    } else {
        let action = format!("revoking {subject}'s product {product_id}");
        (action, products.revoke_entitlement(request).await)
    };
    let change = answered(action, result)?.into_inner();
    let cursor = change.cursor;
    match (grant, change.changed) {
        (true, true) => writeln!(
            out,
            "granted {subject} product {product_id} (feed cursor {cursor})"
        )?,
        (true, false) => writeln!(
            out,
            "{subject} already holds product {product_id}: nothing changed"
        )?,
        (false, true) => writeln!(
            out,
            "revoked {subject}'s product {product_id} (feed cursor {cursor})"
        )?,
        (false, false) => writeln!(
            out,
            "{subject} holds no entitlement to product {product_id}: nothing changed"
        )?,
    }
    Ok(())
}

/// Runs `tokenmesh keys rotate` against a running Auth.
pub async fn rotate_online(connect: &ConnectArgs, out: &mut impl Write) -> Result<(), AdminError> {
    let (mut auth, bearer) = auth_client(connect).await?;
    let rotated = answered(
        "rotating the signing key",
        auth.rotate_signing_key(authorized(RotateSigningKeyRequest {}, &bearer))
            .await,
    )?
    .into_inner();
    writeln!(out, "signing with {}", rotated.kid)?;
    if !rotated.retired_kid.is_empty() {
        writeln!(
            out,
            "retired {}: published until {}",
            rotated.retired_kid,
            rfc3339(rotated.retired_kid_expires_at)
        )?;
    }
    Ok(())
}

/// Runs `tokenmesh token decode`: verifies with the interceptor's verifier,
/// fed Auth's JWKS, then prints what it verified.
pub async fn decode(args: DecodeArgs, out: &mut impl Write) -> Result<(), AdminError> {
    let token = if args.token == "-" {
        let mut line = String::new();
        io::stdin()
            .lock()
            .take(MAX_SECRET_BYTES)
            .read_line(&mut line)
            .map_err(|e| AdminError::Usage(format!("reading the token: {e}")))?;
        line.trim().to_owned()
    } else {
        args.token.trim().to_owned()
    };
    let channel = connect("Auth", &args.auth_url, &args.tls).await?;
    let keys = KeyStore::remote(GrpcJwksSource::auth(channel));
    let mut config = VerifierConfig::access_tokens(args.issuer.auth_issuer.clone(), "");
    // Any of the mesh's audiences: a user's token names all three, a service's
    // or an exchanged token one.
    config.audiences = audience::USER_TOKEN.map(String::from).to_vec();
    let verifier = Verifier::<Caller>::new(config, keys);
    let claims = verifier
        .verify(&token)
        .await
        .map_err(|error| AdminError::Invalid(error.to_string()))?;
    let (header, payload) = json_parts(&token)?;
    let claims = &claims.0;
    writeln!(out, "header: {header}")?;
    writeln!(out, "claims: {payload}")?;
    writeln!(out, "claims version: {}", claims.ver)?;
    writeln!(out, "issued at: {}", rfc3339(claims.iat))?;
    writeln!(out, "not before: {}", rfc3339(claims.nbf))?;
    writeln!(out, "expires at: {}", rfc3339(claims.exp))?;
    writeln!(
        out,
        "verified: signature, issuer, audience, type and expiry, against the keys of Auth at {} (revocation is not checked)",
        args.auth_url
    )?;
    Ok(())
}

/// The JSON of a compact JWT's header and payload, re-serialized compactly.
fn json_parts(token: &str) -> Result<(String, String), AdminError> {
    let mut parts = token.split('.');
    let mut part = || -> Result<String, AdminError> {
        let bytes = parts
            .next()
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .ok_or_else(|| AdminError::Invalid("not a compact JWT".into()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| AdminError::Invalid("not a compact JWT".into()))?;
        Ok(value.to_string())
    };
    Ok((part()?, part()?))
}

/// Unix seconds as an RFC 3339 date, UTC; `-` for 0 (not set).
pub fn rfc3339(unix_seconds: i64) -> String {
    match u64::try_from(unix_seconds) {
        Ok(0) | Err(_) => "-".to_owned(),
        Ok(seconds) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
        }
    }
}

/// Prints `rows` under `header`, columns padded to their widest cell.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> io::Result<()> {
    let rows: Vec<[String; N]> = rows.into_iter().collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:width$}  ");
            }
        }
        text
    };
    writeln!(out, "{}", line(header))?;
    for row in &rows {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}
