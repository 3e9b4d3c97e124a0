//! Mutual TLS: a required client certificate is enforced in the handshake, an
//! optional one is verified when presented; HTTP/2 towards the upstream.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::Arc;

use common::*;
use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

struct ClientPki {
    ca_pem: std::path::PathBuf,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    rogue_cert: CertificateDer<'static>,
    rogue_key: PrivatePkcs8KeyDer<'static>,
}

fn client_pki(dir: &std::path::Path) -> ClientPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mk_ca = || {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let c = p.self_signed(&k).unwrap();
        (c, k)
    };
    let leaf = |ca: &rcgen::Certificate, ca_key: &KeyPair| {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&k, ca, ca_key).unwrap();
        (c.der().clone(), PrivatePkcs8KeyDer::from(k.serialize_der()))
    };
    let (ca, ca_key) = mk_ca();
    let (rogue_ca, rogue_key_ca) = mk_ca();
    let (cert, key) = leaf(&ca, &ca_key);
    let (rogue_cert, rogue_key) = leaf(&rogue_ca, &rogue_key_ca);
    let ca_pem = dir.join("client-ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    ClientPki {
        ca_pem,
        cert,
        key,
        rogue_cert,
        rogue_key,
    }
}

async fn connect_with(
    p: &Pki,
    addr: std::net::SocketAddr,
    cert: Option<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)>,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca_der.clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(vec![c], PrivateKeyDer::Pkcs8(k))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // TLS 1.3 client auth failures surface on the first read, not in connect.
    let (mut s, c) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(c);
    let mut req = get("/v1/time");
    req.headers_mut()
        .insert("host", "localhost".parse().unwrap());
    let resp = s.send_request(req).await?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await?;
    Ok(status)
}

fn tls_table(p: &Pki, ca: &std::path::Path, mode: &str) -> String {
    format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_auth = \"{mode}\"\n",
        p.cert.display(),
        p.key.display(),
        ca.display()
    )
}

async fn gateway_with(p: &Pki, mode: &str, cp: &ClientPki) -> rampart_gateway::Running {
    let (ex, stop) = exchange(demo_exchange::Exchange::new_seeded()).await;
    std::mem::forget(stop);
    let text = config(p, &[ex], "", EXCHANGE_ROUTES);
    let start_tls = text.find("[server.tls]").unwrap();
    let end_tls = text.find("[log]").unwrap();
    let text = format!(
        "{}{}\n{}",
        &text[..start_tls],
        tls_table(p, &cp.ca_pem, mode),
        &text[end_tls..]
    );
    start(&text).await
}

#[tokio::test]
async fn required_client_certificate() {
    let p = pki();
    let cp = client_pki(p.dir.path());
    let g = gateway_with(&p, "required", &cp).await;
    assert_eq!(
        connect_with(&p, g.addr, Some((cp.cert.clone(), cp.key.clone_key())))
            .await
            .unwrap(),
        200
    );
    assert!(
        connect_with(&p, g.addr, None).await.is_err(),
        "no certificate must be refused"
    );
    assert!(
        connect_with(
            &p,
            g.addr,
            Some((cp.rogue_cert.clone(), cp.rogue_key.clone_key()))
        )
        .await
        .is_err(),
        "a certificate from another CA must be refused"
    );
}

#[tokio::test]
async fn optional_client_certificate() {
    let p = pki();
    let cp = client_pki(p.dir.path());
    let g = gateway_with(&p, "optional", &cp).await;
    assert_eq!(connect_with(&p, g.addr, None).await.unwrap(), 200);
    assert_eq!(
        connect_with(&p, g.addr, Some((cp.cert.clone(), cp.key.clone_key())))
            .await
            .unwrap(),
        200
    );
    // Presented but not chaining to the CA: still refused.
    assert!(connect_with(
        &p,
        g.addr,
        Some((cp.rogue_cert.clone(), cp.rogue_key.clone_key()))
    )
    .await
    .is_err());
}

#[tokio::test]
async fn fingerprint_is_sha256_of_der() {
    let p = pki();
    let fp = rampart_gateway::tls::fingerprint(&p.ca_der);
    assert_eq!(fp.len(), 64);
    let again = rampart_gateway::tls::fingerprint(&p.ca_der);
    assert_eq!(fp, again);
    let other = pki();
    assert_ne!(fp, rampart_gateway::tls::fingerprint(&other.ca_der));
}

/// An upstream that speaks only HTTP/2 (prior knowledge) and echoes the
/// protocol version it saw.
async fn h2_only_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("{:?}", req.version());
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn http2_to_the_upstream() {
    let p = pki();
    let up = h2_only_upstream().await;
    let text = config(&p, &[up], "", EXCHANGE_ROUTES)
        .replace("retries = 1\n", "retries = 1\nprotocol = \"h2\"\n");
    assert!(text.contains("protocol = \"h2\""));
    let g = start(&text).await;
    for h2 in [false, true] {
        for _ in 0..3 {
            let r = send(&p, g.addr, h2, get("/v1/markets")).await;
            assert_eq!(r.status, 200);
            assert_eq!(String::from_utf8_lossy(&r.body), "HTTP/2.0");
        }
    }
}

/// A key bound to a client certificate authenticates only on a connection
/// that presented exactly that certificate.
#[tokio::test]
async fn key_bound_to_a_certificate_needs_that_certificate() {
    use rampart_auth::rfc9421::{self, SigningKey};
    use rampart_auth::{KeyMaterial, KeyRecord, MemoryNonceStore, RequestView, Scheme};
    struct OneKey(Arc<KeyRecord>);
    impl rampart_auth::KeyDirectory for OneKey {
        fn lookup<'a>(
            &'a self,
            key_id: &'a str,
        ) -> rampart_auth::directory::BoxFuture<
            'a,
            Result<Option<Arc<KeyRecord>>, rampart_auth::DirectoryError>,
        > {
            let r = (key_id == self.0.key_id).then(|| Arc::clone(&self.0));
            Box::pin(async move { Ok(r) })
        }
        fn advance_counter<'a>(
            &'a self,
            _: &'a str,
            _: u64,
            _: u64,
        ) -> rampart_auth::directory::BoxFuture<'a, Result<bool, rampart_auth::DirectoryError>>
        {
            Box::pin(async { Ok(false) })
        }
    }
    let d = tempfile::tempdir().unwrap();
    let p = pki();
    let cp = client_pki(d.path());
    let ex = demo_exchange::Exchange::new_seeded();
    ex.require_gateway_signature(&[1u8; 32]);
    let (up, stop) = exchange(ex).await;
    std::mem::forget(stop);
    let text = config(&p, &[up], "", EXCHANGE_ROUTES);
    let (a, b) = (
        text.find("[server.tls]").unwrap(),
        text.find("[log]").unwrap(),
    );
    let text = format!(
        "{}{}\n{}",
        &text[..a],
        tls_table(&p, &cp.ca_pem, "optional"),
        &text[b..]
    );
    let cfg = rampart_core::config::parse(&text, std::path::Path::new("/")).unwrap();
    let secret = vec![3u8; 32];
    let record = KeyRecord {
        key_id: "bound".into(),
        account_id: "demo".into(),
        parent_account_id: None,
        scheme: Scheme::Rfc9421HmacSha256,
        scopes: vec!["read".into()],
        allowed_nets: vec![],
        expires_at_ms: None,
        cert_fingerprint: Some(rampart_gateway::tls::fingerprint(&cp.cert)),
        revoked: false,
        material: KeyMaterial::Hmac(zeroize::Zeroizing::new(secret.clone())),
        previous: None,
        nonce_window: 0,
        instruments: Vec::new(),
        products: Vec::new(),
        read_only: false,
        order_limits: rampart_auth::KeyOrderLimits::default(),
    };
    let services = Arc::new(rampart_gateway::auth::AuthServices {
        directory: Arc::new(OneKey(Arc::new(record))),
        nonces: Arc::new(MemoryNonceStore::new(10_000)),
        identity: Arc::new(rampart_gateway::auth::IdentitySigner::hmac(&[1u8; 32]).unwrap()),
        tokens: None,
        audit: None,
        accounts: None,
    });
    let g = rampart_gateway::start_with(cfg, Some(services))
        .await
        .unwrap();

    let signed = |n: &str| {
        let headers = http::HeaderMap::new();
        let view = RequestView {
            method: &http::Method::GET,
            path_and_query: "/v1/account",
            authority: "localhost",
            scheme: "https",
            headers: &headers,
            body: b"",
        };
        let created = rampart_gateway::auth::now_ms() / 1000;
        let key = SigningKey::Hmac(zeroize::Zeroizing::new(secret.clone()));
        let sig = rfc9421::sign(
            &view,
            "bound",
            Scheme::Rfc9421HmacSha256,
            &key,
            created,
            n,
            &[],
        )
        .unwrap();
        let mut req = get("/v1/account");
        sig.insert_into(req.headers_mut()).unwrap();
        req.headers_mut()
            .insert("host", "localhost".parse().unwrap());
        req
    };
    let send_with = |cert: Option<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)>,
                     req: http::Request<http_body_util::Full<bytes::Bytes>>| {
        let p = &p;
        let addr = g.addr;
        async move {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(p.ca_der.clone()).unwrap();
            let b = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
            let mut cfg = match cert {
                Some((c, k)) => b
                    .with_client_auth_cert(vec![c], PrivateKeyDer::Pkcs8(k))
                    .unwrap(),
                None => b.with_no_client_auth(),
            };
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let (mut s, c) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(c);
            let resp = s.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = send_with(Some((cp.cert.clone(), cp.key.clone_key())), signed("n1")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send_with(None, signed("n2")).await;
    assert_eq!(status, 401);
    assert!(body.contains("CERT_REQUIRED"), "{body}");
}
