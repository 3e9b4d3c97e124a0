//! Rampart data plane: the TLS 1.3 listener with its limits, the route table,
//! upstream pools with health checking and safe retries, the proxy pipeline,
//! and the admin listener.
//!
//! What this crate must never do: forward a request it has not fully checked,
//! read an unbounded body, leak upstream internals in an error, or retry a
//! request that may already have reached the upstream unless the method is
//! safe.

pub mod admin;
pub mod listener;
pub mod proxy;
pub mod respond;
pub mod router;
pub mod runtime;
pub mod tls;
pub mod upstream;

pub use runtime::{Gateway, GatewayError, Runtime};

use std::net::SocketAddr;
use std::sync::Arc;

/// A started gateway with its bound addresses.
#[derive(Debug)]
pub struct Running {
    /// The gateway (reload, shutdown).
    pub gateway: Arc<Gateway>,
    /// The public listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address, if configured.
    pub admin_addr: Option<SocketAddr>,
}

/// Binds the configured listeners and starts serving in the background.
pub async fn start(cfg: rampart_core::config::Config) -> Result<Running, GatewayError> {
    let listen = cfg.server.listen;
    let admin = cfg.admin.clone();
    let admin_tls = match &admin {
        Some(a) => match a.tls.as_ref().or(cfg.server.tls.as_ref()) {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        },
        None => None,
    };
    let gateway = Gateway::new(cfg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
        addr: listen,
        source,
    })?;
    let mut admin_addr = None;
    if let Some(a) = admin {
        let l = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: a.listen,
                source,
            })?;
        admin_addr = l.local_addr().ok();
        tokio::spawn(admin::serve(gateway.clone(), l, admin_tls));
    }
    tokio::spawn(listener::serve(gateway.clone(), listener));
    tracing::info!(%addr, admin = ?admin_addr, "rampart listening");
    Ok(Running {
        gateway,
        addr,
        admin_addr,
    })
}
