//! A compiled configuration snapshot (routes, pools, limits) and the
//! [`Gateway`] that swaps snapshots atomically on reload.
//!
//! A request loads the current snapshot once and keeps it to the end, so a
//! reload never changes the rules under an in-flight request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rampart_core::config::{self, Config};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::router::Router;
use crate::tls;
use crate::upstream::Pool;

/// One configuration snapshot, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub cfg: Config,
    /// The route table.
    pub router: Router,
    /// Pools by name.
    pub pools: HashMap<String, Arc<Pool>>,
    /// Authentication services; `None` = non-public routes are refused
    /// (fail closed).
    pub auth: Option<Arc<crate::auth::AuthServices>>,
    /// This snapshot's compiled rate-limit rules.
    pub limits: crate::limits::Limits,
    /// Gateway-wide limiter state (shared by every snapshot).
    pub shield: Arc<crate::limits::Shield>,
    /// Gateway-wide kill switches (survive reloads and restarts).
    pub kill: Arc<crate::kill::KillSwitch>,
    /// Gateway-wide failed-authentication defense and adaptive risk.
    pub defense: Arc<crate::defense::Defense>,
    /// This snapshot's positive models and injection detector.
    pub waf: crate::waf::Waf,
    /// The route of `GET /v1/limits` (a gateway endpoint, any scope).
    pub limits_route: Arc<crate::router::Route>,
    /// The route of `POST /v1/mfa/verify` (a gateway endpoint, any scope).
    pub mfa_route: Arc<crate::router::Route>,
    /// Routes of `/v1/address-book` (changes; list).
    pub address_route: Arc<crate::router::Route>,
    /// The list route of `/v1/address-book`.
    pub address_list_route: Arc<crate::router::Route>,
    /// This snapshot's authorization (Cedar policies, sensitive actions).
    pub authz: crate::authz::Authz,
    /// Gateway-wide trading state (step-up tokens, order owners, pre-trade).
    pub trading: Arc<crate::trading::Trading>,
    stop: CancellationToken,
}

impl Runtime {
    /// Builds the snapshot and starts its health checks.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Limits`] if a rate-limit rule cannot be compiled.
    pub fn start(
        cfg: Config,
        auth: Option<Arc<crate::auth::AuthServices>>,
        shield: Arc<crate::limits::Shield>,
        defense: Arc<crate::defense::Defense>,
        kill: Arc<crate::kill::KillSwitch>,
        trading: Arc<crate::trading::Trading>,
    ) -> Result<Arc<Self>, GatewayError> {
        let authz = crate::authz::Authz::compile(&cfg).map_err(GatewayError::Policy)?;
        let limits = crate::limits::Limits::compile(&cfg.limits, &cfg.routes)
            .map_err(GatewayError::Limits)?;
        let waf = crate::waf::Waf::compile(&cfg).map_err(GatewayError::Waf)?;
        let router = Router::new(&cfg.routes);
        let pools: HashMap<String, Arc<Pool>> = cfg
            .upstreams
            .iter()
            .map(|(n, u)| (n.clone(), Arc::new(Pool::new(n, u))))
            .collect();
        let stop = CancellationToken::new();
        for p in pools.values() {
            p.publish_health();
            if p.cfg.health.is_some() {
                tokio::spawn(p.clone().health_loop(stop.clone()));
            }
        }
        let limits_route = gateway_route(
            http::Method::GET,
            crate::proxy::LIMITS_PATH,
            "GetLimits",
            "",
            0,
        );
        let mfa_route = gateway_route(http::Method::POST, "/v1/mfa/verify", "MfaVerify", "", 1024);
        let address_route = gateway_route(
            http::Method::POST,
            "/v1/address-book",
            "AddressBookChange",
            "withdraw",
            1024,
        );
        let address_list_route = gateway_route(
            http::Method::GET,
            "/v1/address-book",
            "GetAddressBook",
            "read",
            0,
        );
        Ok(Arc::new(Self {
            cfg,
            router,
            pools,
            auth,
            limits,
            shield,
            defense,
            kill,
            waf,
            limits_route,
            mfa_route,
            address_route,
            address_list_route,
            authz,
            trading,
            stop,
        }))
    }

    /// Stops background tasks of this snapshot (health checks).
    pub fn retire(&self) {
        self.stop.cancel();
    }
}

/// The route of one of the gateway's own endpoints (no upstream; `scope`
/// `""` = any authenticated key).
fn gateway_route(
    method: http::Method,
    path: &str,
    action: &str,
    scope: &str,
    max_body_bytes: usize,
) -> Arc<crate::router::Route> {
    Arc::new(crate::router::Route {
        cfg: rampart_core::config::RouteConfig {
            method,
            path: path.to_owned(),
            upstream: String::new(),
            action: action.to_owned(),
            scope: scope.to_owned(),
            weight: 1,
            rewrite: None,
            max_body_bytes: Some(max_body_bytes),
            timeout: None,
            retry: rampart_core::config::RetryPolicy::Never,
            group: None,
            schema: None,
            waf: None,
            account: None,
            order_id: None,
            instrument: None,
        },
        rewrite: None,
        index: usize::MAX,
        stats: crate::stats::RouteStats::new(action),
    })
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Errors starting or reloading the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] config::ConfigErrors),
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A route's schema could not be loaded.
    #[error("input validation:\n{0}")]
    Waf(String),
    /// An authorization policy is invalid.
    #[error("authorization policies:\n{0}")]
    Policy(String),
    /// The rate limits, abuse defense or risk engine could not be set up.
    #[error("abuse defense: {0}")]
    Limits(String),
    /// A socket could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The running gateway: current snapshot, TLS acceptor, connection limits.
pub struct Gateway {
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) tls: ArcSwapOption<TlsAcceptor>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) conns: Arc<tokio::sync::Semaphore>,
    pub(crate) overflow: Arc<tokio::sync::Semaphore>,
    pub(crate) auth: Option<Arc<crate::auth::AuthServices>>,
    pub(crate) shield: Arc<crate::limits::Shield>,
    pub(crate) defense: Arc<crate::defense::Defense>,
    pub(crate) kill: Arc<crate::kill::KillSwitch>,
    pub(crate) trading: Arc<crate::trading::Trading>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

fn acceptor(cfg: &Config) -> Result<Option<TlsAcceptor>, tls::TlsError> {
    cfg.server
        .tls
        .as_ref()
        .map(|t| tls::server_config(t).map(TlsAcceptor::from))
        .transpose()
}

impl Gateway {
    /// Builds a gateway from a validated configuration (loads TLS material,
    /// starts health checks). Does not bind.
    pub fn new(cfg: Config) -> Result<Arc<Self>, GatewayError> {
        Self::with_auth(cfg, None)
    }

    /// As [`Gateway::new`], with authentication services for non-public
    /// routes (without them those routes are refused).
    pub fn with_auth(
        cfg: Config,
        auth: Option<Arc<crate::auth::AuthServices>>,
    ) -> Result<Arc<Self>, GatewayError> {
        let tls = acceptor(&cfg)?;
        if cfg.dangerous.plaintext && tls.is_none() {
            tracing::warn!("DANGEROUS: the public listener serves plain HTTP without TLS (`dangerous.plaintext = true`)");
        }
        let max = cfg.server.max_connections;
        let shield =
            Arc::new(crate::limits::Shield::new(&cfg.limits).map_err(GatewayError::Limits)?);
        let shutdown = CancellationToken::new();
        let alerter = crate::alerts::Alerter::start(&cfg.alerts, shutdown.child_token())
            .map_err(GatewayError::Limits)?;
        let defense = Arc::new(
            crate::defense::Defense::new(&cfg, Some(alerter as Arc<dyn crate::defense::AlertSink>))
                .map_err(GatewayError::Limits)?,
        );
        // The switch stops order entry: `PlaceOrder` and every route in the
        // `orders` group. Persisted only where the gateway keeps state.
        let mut order_actions = vec!["PlaceOrder".to_owned()];
        order_actions.extend(
            cfg.routes
                .iter()
                .filter(|r| r.group.as_deref() == Some("orders"))
                .map(|r| r.action.clone()),
        );
        let kill = Arc::new(
            crate::kill::KillSwitch::load(
                auth.is_some().then_some(cfg.storage.data_dir.as_path()),
                order_actions,
            )
            .map_err(GatewayError::Limits)?,
        );
        if auth.is_some() && cfg.policy.is_none() {
            tracing::warn!("authorization policies are off (no [policy] section): scopes, IP allow lists, expiry, object-level checks, MFA step-up and [pretrade] still apply; KYC tiers, instrument and product lists and the withdrawal address book do not");
        }
        let trading = Arc::new(crate::trading::Trading::new(&cfg));
        let rt = Runtime::start(
            cfg,
            auth.clone(),
            shield.clone(),
            defense.clone(),
            kill.clone(),
            trading.clone(),
        )?;
        Ok(Arc::new(Self {
            runtime: ArcSwap::new(rt),
            tls: ArcSwapOption::new(tls.map(Arc::new)),
            shutdown,
            tracker: TaskTracker::new(),
            conns: Arc::new(tokio::sync::Semaphore::new(max)),
            overflow: Arc::new(tokio::sync::Semaphore::new(max.clamp(16, 1024))),
            auth,
            shield,
            defense,
            kill,
            trading,
        }))
    }

    /// The current snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Validates and swaps in a new configuration. On error the old one
    /// stays. Listener address and connection cap changes need a restart.
    pub fn reload(&self, cfg: Config) -> Result<(), GatewayError> {
        let tls = acceptor(&cfg)?;
        let old = self.runtime.load_full();
        if old.cfg.server.listen != cfg.server.listen {
            tracing::warn!(old = %old.cfg.server.listen, new = %cfg.server.listen, "listen address changes need a restart; keeping the old socket");
        }
        if old.cfg.server.max_connections != cfg.server.max_connections {
            tracing::warn!("max_connections changes need a restart");
        }
        if old.cfg.admin.as_ref().map(|a| a.listen) != cfg.admin.as_ref().map(|a| a.listen) {
            tracing::warn!("[admin] changes need a restart");
        }
        if old.cfg.log.level != cfg.log.level {
            tracing::warn!(
                "log.level changes need a restart (RUST_LOG also applies at start only)"
            );
        }
        if tls.is_none() && cfg.dangerous.plaintext {
            tracing::warn!("DANGEROUS: after this reload the public listener serves plain HTTP without TLS (`dangerous.plaintext = true`)");
        }
        if old.cfg.limits.max_keys != cfg.limits.max_keys {
            tracing::warn!("limits.max_keys changes need a restart");
        }
        if old.cfg.abuse != cfg.abuse || old.cfg.risk != cfg.risk || old.cfg.alerts != cfg.alerts {
            tracing::warn!("[abuse], [risk] and [alerts] changes need a restart");
        }
        self.trading.reload(&cfg);
        let rt = Runtime::start(
            cfg,
            self.auth.clone(),
            self.shield.clone(),
            self.defense.clone(),
            self.kill.clone(),
            self.trading.clone(),
        )?;
        self.tls.store(tls.map(Arc::new));
        let prev = self.runtime.swap(rt);
        prev.retire();
        tracing::info!(
            routes = self.runtime.load().cfg.routes.len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// Reads, validates and applies a configuration file; logs the outcome.
    pub fn reload_from_file(&self, path: &Path) -> Result<(), GatewayError> {
        let res = config::load(path)
            .map_err(GatewayError::from)
            .and_then(|cfg| self.reload(cfg));
        if let Err(e) = &res {
            tracing::error!(file = %path.display(), error = %e, "reload refused; the previous configuration stays active");
        }
        res
    }

    /// Stops accepting and asks connections to finish.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every connection task has ended (after [`Self::shutdown`]).
    pub async fn drained(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
