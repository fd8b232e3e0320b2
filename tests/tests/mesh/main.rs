//! Integration tests: the real services on 127.0.0.1:0, driven through the
//! generated clients (and the real grpcurl). One binary, one module per area.

mod admin;
mod admin_cli;
mod auth_down;
mod auth_lifecycle;
mod client_layer;
mod demo_flow;
mod entitlements;
mod errors;
mod feeds_scale;
mod feeds_storage;
mod grpc_web;
mod grpcurl;
mod jwks_http;
mod keys;
mod metrics;
mod orders;
mod python_client;
mod replicas;
mod replicas_products;
mod security_exchange;
mod security_feeds;
mod security_keys;
mod security_limits;
mod security_logins;
mod tls;
mod tokens;
