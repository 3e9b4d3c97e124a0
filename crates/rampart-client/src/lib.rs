//! Rampart's client side: the credentials a client holds, one signing
//! function for every scheme the gateway accepts, and an HTTPS client.
//!
//! - [`Credentials`]: a `demo-credentials.json`-shaped file (CONTRACT.md)
//!   with its [`ClientKey`]s; secrets live in zeroizing buffers and no
//!   `Debug` output shows them.
//! - [`sign()`]: signs a request with a key of any scheme — RFC 9421
//!   (`hmac-sha256`, `ed25519`, `ecdsa-p256-sha256`) or the
//!   exchange-compatible profiles (Binance-, Kraken-, Coinbase-style) —
//!   using `rampart-auth`'s signing side, so what it produces is what the
//!   gateway verifies.
//! - [`Client`]: hyper-util over tokio-rustls (aws-lc-rs), TLS 1.3 only,
//!   HTTP/2 or HTTP/1.1 by ALPN, trusting only the gateway's CA.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_client::ClientError> {
//! use rampart_client::{Client, Credentials};
//! let creds = Credentials::load("rampart-data/demo-credentials.json".as_ref())?;
//! let client = Client::from_credentials(&creds)?;
//! let response = client
//!     .send(creds.key("trader-hmac"), http::Method::GET, "/v1/account", None, http::HeaderMap::new())
//!     .await?;
//! println!("{} {}", response.status, String::from_utf8_lossy(&response.body));
//! # Ok(()) }
//! ```

mod client;
mod credentials;
mod error;
mod sign;

/// The `bytes` crate this API uses ([`Response::body`]).
pub use bytes;
/// The `http` crate this API uses (methods, headers, status codes).
pub use http;

pub use client::{
    random_nonce, system_now_ms, tls_config, Client, Response, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, SERVER_TIME_HEADER,
};
pub use credentials::{ClientKey, Credentials, Material};
pub use error::ClientError;
pub use sign::{next_counter_nonce, sign, SignedParts, MFA_HEADER};
