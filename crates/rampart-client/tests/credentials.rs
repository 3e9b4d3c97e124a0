//! `Credentials::load`: a file with one key of every kind, lookups, path
//! resolution, and errors and `Debug` output that never show a secret.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "test code"
)]

mod common;

use common::{credentials_json, key_set, KINDS};
use rampart_auth::Scheme;
use rampart_client::{ClientError, ClientKey, Credentials};
use serde_json::json;

fn assert_no_secret(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "secret leaked into: {text}");
        // Nor a recognisable chunk of it.
        if s.len() > 24 {
            assert!(
                !text.contains(&s[..24]),
                "secret prefix leaked into: {text}"
            );
        }
    }
}

#[test]
fn loads_a_file_with_one_key_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_set();
    let path = dir.path().join("demo-credentials.json");
    let json = credentials_json(&keys, "https://127.0.0.1:8443", "ca.pem");
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

    let creds = Credentials::load(&path).unwrap();
    assert_eq!(creds.gateway_url, "https://127.0.0.1:8443");
    assert_eq!(creds.admin_url.as_deref(), Some("https://127.0.0.1:9443"));
    assert_eq!(creds.account, "demo");
    // A relative CA path is relative to the credentials file.
    assert_eq!(creds.ca_cert_path, dir.path().join("ca.pem"));
    assert_eq!(
        creds.totp_secret_base32(),
        Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    );
    assert_eq!(creds.withdrawal_addresses.len(), 1);
    assert_eq!(creds.keys.len(), KINDS.len());
    for ((name, scheme), entry) in KINDS.iter().zip(&keys.entries) {
        let key = creds.key(name).unwrap();
        assert_eq!(key.name(), *name);
        assert_eq!(key.scheme(), Scheme::parse(scheme).unwrap());
        assert_eq!(key.scheme().as_str(), *scheme);
        assert_eq!(key.scopes(), ["read", "trade"]);
        let key_id = entry["key_id"].as_str().unwrap();
        assert_eq!(key.key_id(), key_id);
        // By key id too.
        assert_eq!(creds.key(key_id).unwrap().name(), *name);
        // The client's idea of the verifying key is the generated one.
        assert!(
            common::same_material(&key.verifying_key().unwrap(), &keys.verifier.keys[key_id].1),
            "{name}"
        );
    }
    assert!(creds.key("nope").is_none());

    // An absolute CA path is kept.
    let json = credentials_json(&keys, "https://127.0.0.1:8443", "/etc/rampart/ca.pem");
    std::fs::write(&path, json.to_string()).unwrap();
    assert_eq!(
        Credentials::load(&path).unwrap().ca_cert_path,
        std::path::Path::new("/etc/rampart/ca.pem")
    );
}

#[test]
fn debug_output_shows_no_secret() {
    let keys = key_set();
    let json = credentials_json(&keys, "https://127.0.0.1:8443", "/ca.pem");
    let creds = Credentials::from_json(json.to_string().as_bytes()).unwrap();
    let text = format!("{creds:?} {creds:#?}");
    assert!(text.contains("trader-hmac") && text.contains("REDACTED"));
    assert_no_secret(&text, &keys.secrets);
    assert!(!text.contains("JBSWY3DP"));
    for key in &creds.keys {
        assert_no_secret(&format!("{key:?} {:?}", key.material()), &keys.secrets);
    }
}

#[test]
fn unusable_keys_are_named_without_their_material() {
    let secret = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr";
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"name": "a", "key_id": "k1", "scheme": "rot13", "secret_b64": secret}),
            "unknown scheme `rot13`",
        ),
        (
            json!({"name": "b", "key_id": "k2", "scheme": "hmac-sha256"}),
            "needs `secret` or `secret_b64`",
        ),
        (
            json!({"name": "c", "key_id": "k3", "scheme": "hmac-sha256", "secret_b64": format!("{secret}!!")}),
            "not base64",
        ),
        (
            json!({"name": "d", "key_id": "k4", "scheme": "ed25519", "private_key_pem": format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n")}),
            "neither P-256 nor Ed25519",
        ),
        (
            json!({"name": "e", "key_id": "k5", "scheme": "coinbase-jwt-es256"}),
            "needs `private_key_pem`",
        ),
        (
            json!({"name": "f", "key_id": "k6", "scheme": "kraken-hmac-sha512", "secret_b64": ""}),
            "the secret is empty",
        ),
    ];
    for (entry, needle) in cases {
        let file = json!({
            "gateway_url": "https://127.0.0.1:8443",
            "ca_cert_path": "/ca.pem",
            "account": "demo",
            "keys": [entry],
        });
        let err = Credentials::from_json(file.to_string().as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ClientError::Key { .. }), "{text}");
        assert!(text.contains(needle), "`{needle}` not in: {text}");
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }

    // A P-256 key where an Ed25519 key is required, and the reverse.
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    for (scheme, pem) in [
        ("ed25519", &p256),
        ("binance-ed25519", &p256),
        ("coinbase-jwt-eddsa", &p256),
        ("ecdsa-p256-sha256", &ed),
        ("coinbase-jwt-es256", &ed),
    ] {
        let err = ClientKey::from_fields("x", "kx", scheme, None, None, Some(pem)).unwrap_err();
        assert!(err.to_string().contains("needs"), "{scheme}: {err}");
        assert!(!err.to_string().contains(&common::pem_body(pem)[..20]));
    }
}

#[test]
fn malformed_files_report_a_position_never_a_value() {
    let secret = "SUPERSECRETVALUE1234567890";
    for text in [
        format!(
            r#"{{"gateway_url": "https://x", "ca_cert_path": "/c", "account": "demo", "keys": "{secret}"}}"#
        ),
        format!(
            r#"{{"gateway_url": "https://x", "ca_cert_path": "/c", "account": "demo", "keys": [{{"name": "a", "key_id": "k", "scheme": "hmac-sha256", "secret_b64": ["{secret}"]}}]}}"#
        ),
        format!(r#"{{"gateway_url": "https://x", "account": "{secret}"}}"#),
        format!(r#"{{"gateway_url": "https://x", "account": "{secret}""#),
        format!(r#"{{"totp_secret_base32": {secret}}}"#),
    ] {
        let err = Credentials::from_json(text.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ClientError::Credentials(_)), "{msg}");
        assert!(msg.contains("line 1 column"), "{msg}");
        assert!(!msg.contains(secret), "{msg}");
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.json");
    let err = Credentials::load(&path).unwrap_err();
    assert!(matches!(err, ClientError::Io { .. }));
    assert!(err.to_string().contains("nope.json"), "{err}");
}

#[test]
fn hmac_secrets_are_read_as_the_gateway_reads_them() {
    // `secret` wins over `secret_b64` (raw ASCII bytes), as in the
    // gateway's seeding of the demo store.
    let key = ClientKey::from_fields(
        "x",
        "kx",
        "hmac-sha256",
        Some("ascii-secret"),
        Some("AAAA"),
        None,
    )
    .unwrap();
    let rampart_auth::KeyMaterial::Hmac(bytes) = key.verifying_key().unwrap() else {
        panic!("not hmac")
    };
    assert_eq!(bytes.as_slice(), b"ascii-secret");
    let key =
        ClientKey::from_fields("x", "kx", "kraken-hmac-sha512", None, Some("AAEC"), None).unwrap();
    let rampart_auth::KeyMaterial::Hmac(bytes) = key.verifying_key().unwrap() else {
        panic!("not hmac")
    };
    assert_eq!(bytes.as_slice(), [0, 1, 2]);
}
