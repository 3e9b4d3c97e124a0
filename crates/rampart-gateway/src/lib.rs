//! Rampart data plane: the TLS 1.3 listener with its limits, the route table,
//! upstream pools with health checking and safe retries, the proxy pipeline,
//! and the admin listener.
//!
//! What this crate must never do: forward a request it has not fully checked,
//! read an unbounded body, leak upstream internals in an error, or retry a
//! request that may already have reached the upstream unless the method is
//! safe.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod defense;
pub mod kill;
pub mod limits;
pub mod listener;
pub mod proxy;
pub mod respond;
pub mod router;
pub mod runtime;
pub mod stats;
pub mod tls;
pub mod tokens;
pub mod trading;
pub mod upstream;
pub mod waf;

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
    start_with(cfg, None).await
}

/// [`start`] with authentication services.
pub async fn start_with(
    cfg: rampart_core::config::Config,
    auth: Option<Arc<auth::AuthServices>>,
) -> Result<Running, GatewayError> {
    start_full(cfg, auth, None).await
}

/// [`start_with`], with the store that holds operator accounts (without
/// one, operator sign-in is unavailable and the admin listener's mutating
/// endpoints are unauthenticated).
pub async fn start_full(
    cfg: rampart_core::config::Config,
    auth: Option<Arc<auth::AuthServices>>,
    operators: Option<rampart_store::AnyStore>,
) -> Result<Running, GatewayError> {
    let listen = cfg.server.listen;
    let admin = prepare_admin(&cfg)?;
    let gateway = Gateway::with_auth(cfg, auth)?;
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
    let admin_addr = serve_admin(&gateway, admin, operators).await?;
    tokio::spawn(trading::refresh_prices(
        gateway.clone(),
        gateway.shutdown.child_token(),
    ));
    tokio::spawn(listener::serve(gateway.clone(), listener));
    tracing::info!(%addr, admin = ?admin_addr, "rampart listening");
    Ok(Running {
        gateway,
        addr,
        admin_addr,
    })
}

/// Starts the gateway thread-per-core: `workers` OS threads, each with a
/// single-threaded runtime, its own `SO_REUSEPORT` listener on the public
/// address and its own upstream clients, like nginx's worker processes. The
/// admin listener, health checks and reloads run on the calling runtime.
/// `operators` is the store of operator accounts, as for [`start_full`].
pub async fn start_sharded(
    cfg: rampart_core::config::Config,
    workers: usize,
    auth: Option<Arc<auth::AuthServices>>,
    operators: Option<rampart_store::AnyStore>,
) -> Result<Running, GatewayError> {
    let workers = workers.clamp(1, 256);
    upstream::set_max_workers(workers);
    let listen = cfg.server.listen;
    let admin = prepare_admin(&cfg)?;
    let gateway = Gateway::with_auth(cfg, auth)?;
    let bind_err = |source| GatewayError::Bind {
        addr: listen,
        source,
    };
    // The first socket resolves port 0; the others join it with SO_REUSEPORT.
    let first = reuseport_listener(listen).map_err(bind_err)?;
    let addr = first.local_addr().map_err(bind_err)?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(reuseport_listener(addr).map_err(bind_err)?);
    }
    for (i, std_listener) in sockets.into_iter().enumerate() {
        let gw = gateway.clone();
        std::thread::Builder::new()
            .name(format!("rampart-worker-{i}"))
            .spawn(move || {
                upstream::set_worker_id(i + 1);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "worker runtime failed to start");
                        return;
                    }
                };
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => listener::serve(gw.clone(), l).await,
                        Err(e) => tracing::error!(error = %e, "worker listener failed"),
                    }
                    // Let this worker's connections drain before its runtime ends.
                    gw.shutdown.cancelled().await;
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                });
            })
            .map_err(bind_err)?;
    }
    let admin_addr = serve_admin(&gateway, admin, operators).await?;
    tracing::info!(%addr, admin = ?admin_addr, workers, "rampart listening");
    Ok(Running {
        gateway,
        addr,
        admin_addr,
    })
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// The admin listener's settings and TLS acceptor, resolved before any port is
/// bound. Installs the metrics recorder before the first request caches its
/// handles.
fn prepare_admin(
    cfg: &rampart_core::config::Config,
) -> Result<
    Option<(
        rampart_core::config::AdminConfig,
        Option<tokio_rustls::TlsAcceptor>,
    )>,
    GatewayError,
> {
    let Some(a) = cfg.admin.clone() else {
        return Ok(None);
    };
    let acceptor = match a.tls.as_ref().or(cfg.server.tls.as_ref()) {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
        None => None,
    };
    let _ = admin::metrics_handle();
    Ok(Some((a, acceptor)))
}

/// Binds the admin listener (if configured) and serves it on the current
/// runtime, with operator sign-in when a store is given. Warns when its
/// mutating endpoints are unauthenticated (no store, or no operator has a
/// credential yet).
async fn serve_admin(
    gateway: &Arc<Gateway>,
    admin: Option<(
        rampart_core::config::AdminConfig,
        Option<tokio_rustls::TlsAcceptor>,
    )>,
    store: Option<rampart_store::AnyStore>,
) -> Result<Option<SocketAddr>, GatewayError> {
    let Some((a, acceptor)) = admin else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: a.listen,
            source,
        })?;
    let addr = l.local_addr().ok();
    let port = addr.map_or(a.listen.port(), |x| x.port());
    let ops = match store {
        Some(store) => Some(Arc::new(
            admin::operators::Operators::new(
                store,
                a.operators.clone(),
                port,
                Arc::new(auth::now_ms),
            )
            .map_err(GatewayError::Limits)?,
        )),
        None => None,
    };
    let unauthenticated = match &ops {
        None => Some("no operator store"),
        Some(o) => match o.enforced().await {
            Ok(true) => None,
            Ok(false) => {
                Some("no operator has a WebAuthn credential yet (`rampart operators add NAME`)")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read operator accounts: mutating admin endpoints refuse until the store answers");
                None
            }
        },
    };
    if let Some(why) = unauthenticated {
        tracing::warn!(admin = ?addr, reason = why, "the admin listener's mutating endpoints (kill switch, unlock, risk trust) are UNAUTHENTICATED");
    } else if let Some(o) = &ops {
        tracing::info!(admin = ?addr, origins = ?o.origins(), "admin changes need an operator session (WebAuthn)");
    }
    tokio::spawn(admin::serve(gateway.clone(), l, acceptor, ops));
    Ok(addr)
}
