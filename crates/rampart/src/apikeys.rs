//! `rampart keys create / list / show / revoke / rotate`: the API key
//! lifecycle. Secrets are generated here (≥ 256 bits), shown once, and
//! stored only encrypted through the vault; asymmetric keys are registered
//! by public key only.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use rampart_auth::Scheme;
use rampart_store::{Account, ApiKey, CipherRef, CipherSwap, KeyState, Store, StoreError};
use rampart_vault::{now_ms, Vault};
use serde_json::json;
use zeroize::Zeroizing;

/// Options of `rampart keys create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Owning account (created if it does not exist).
    #[arg(long)]
    pub account: String,
    /// Parent account, when creating a sub-account.
    #[arg(long)]
    pub parent: Option<String>,
    /// hmac-sha256, ed25519, ecdsa-p256-sha256, binance-hmac-sha256,
    /// binance-ed25519, kraken-hmac-sha512, coinbase-jwt-es256, coinbase-jwt-eddsa.
    #[arg(long, default_value = "hmac-sha256")]
    pub scheme: String,
    /// Comma-separated scopes (read, trade, withdraw, transfer, keys:manage …).
    #[arg(long, default_value = "read")]
    pub scopes: String,
    /// Allowed client network (CIDR, v4 or v6); repeat for several. None = any.
    #[arg(long = "allow-ip")]
    pub allow_ip: Vec<String>,
    /// Lifetime, e.g. `30days` (none = no expiry).
    #[arg(long)]
    pub expires_in: Option<humantime::Duration>,
    /// Bind the key to a client certificate (hex SHA-256 of the DER leaf).
    #[arg(long)]
    pub cert_fingerprint: Option<String>,
    /// Public key (PEM SubjectPublicKeyInfo) for asymmetric schemes.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Kraken-style keys: accept nonces up to this far below the highest
    /// one seen (out of order, each once); 0 = strictly increasing.
    #[arg(long, default_value_t = 0)]
    pub nonce_window: u64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn is_hmac(s: Scheme) -> bool {
    matches!(
        s,
        Scheme::Rfc9421HmacSha256 | Scheme::BinanceHmac | Scheme::KrakenHmac
    )
}

/// A fresh secret in the encoding the scheme's clients expect, and its raw bytes.
pub(crate) fn new_secret(s: Scheme) -> (serde_json::Value, Zeroizing<Vec<u8>>) {
    match s {
        Scheme::BinanceHmac => {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            // 64 characters from 62 symbols: ≈ 381 bits.
            let text: String = (0..64)
                .map(|_| {
                    let mut b = [0u8; 1];
                    loop {
                        b[0] = rand::random();
                        // Rejection sampling: no modulo bias.
                        if usize::from(b[0]) < 248 {
                            break;
                        }
                    }
                    A.get(usize::from(b[0]) % 62)
                        .map_or('A', |c| char::from(*c))
                })
                .collect();
            let raw = Zeroizing::new(text.as_bytes().to_vec());
            (json!({ "secret": text }), raw)
        }
        Scheme::KrakenHmac => {
            let raw: Zeroizing<Vec<u8>> = Zeroizing::new((0..64).map(|_| rand::random()).collect());
            (
                json!({ "secret_b64": base64::engine::general_purpose::STANDARD.encode(&*raw) }),
                raw,
            )
        }
        _ => {
            let raw: Zeroizing<Vec<u8>> = Zeroizing::new((0..32).map(|_| rand::random()).collect());
            (
                json!({ "secret_b64": base64::engine::general_purpose::STANDARD.encode(&*raw) }),
                raw,
            )
        }
    }
}

/// Raw public key from a PEM SubjectPublicKeyInfo: Ed25519 (32 bytes) or
/// P-256 (65-byte uncompressed point).
fn public_key_from_pem(text: &str, scheme: Scheme) -> Result<Vec<u8>, String> {
    const ED25519_SPKI: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    const P256_SPKI: [u8; 27] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "the public key is not PEM".to_owned())?;
    let ed = matches!(
        scheme,
        Scheme::Rfc9421Ed25519 | Scheme::BinanceEd25519 | Scheme::CoinbaseJwtEdDsa
    );
    if ed {
        match der.strip_prefix(&ED25519_SPKI) {
            Some(k) if k.len() == 32 => Ok(k.to_vec()),
            _ => Err("expected an Ed25519 public key (PEM SubjectPublicKeyInfo)".to_owned()),
        }
    } else {
        match der.strip_prefix(&P256_SPKI[..26]) {
            Some(k) if k.len() == 65 && k.first() == Some(&4) => Ok(k.to_vec()),
            _ => Err("expected a P-256 public key (PEM SubjectPublicKeyInfo)".to_owned()),
        }
    }
}

/// `keys create`: prints the new key as JSON, its secret shown only here.
///
/// # Errors
/// A message for bad arguments or store errors.
pub async fn create(vault: &Vault, a: CreateArgs) -> Result<ApiKey, String> {
    let scheme =
        Scheme::parse(&a.scheme).ok_or_else(|| format!("unknown scheme `{}`", a.scheme))?;
    let scopes: Vec<String> = a
        .scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err("a key needs at least one scope".to_owned());
    }
    for c in &a.allow_ip {
        c.parse::<ipnet::IpNet>()
            .map(|_| ())
            .or_else(|_| c.parse::<std::net::IpAddr>().map(|_| ()))
            .map_err(|_| format!("`{c}` is not a CIDR network or address"))?;
    }
    if let Some(fp) = &a.cert_fingerprint {
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "--cert-fingerprint must be 64 hex digits (SHA-256 of the DER certificate)"
                    .to_owned(),
            );
        }
    }
    let store = vault.store();
    match store.get_account(&a.account).await {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => {
            store
                .create_account(&Account {
                    id: a.account.clone(),
                    name: a.account.clone(),
                    parent_id: a.parent.clone(),
                    created_at_ms: now_ms(),
                    kyc_tier: 0,
                    risk_profile: None,
                })
                .await
                .map_err(err)?;
            eprintln!("created account `{}`", a.account);
        }
        Err(e) => return Err(err(e)),
    }
    let key_id = format!(
        "rk_{}",
        (0..10)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect::<String>()
    );
    let mut out = json!({
        "key_id": key_id,
        "account": a.account,
        "scheme": scheme.as_str(),
        "scopes": scopes,
    });
    let mut key = ApiKey {
        key_id: key_id.clone(),
        account_id: a.account.clone(),
        scheme: scheme.as_str().to_owned(),
        scopes,
        allowed_cidrs: a.allow_ip,
        expires_at_ms: a.expires_in.map(|d| {
            now_ms()
                .saturating_add(i64::try_from(Duration::from(d).as_millis()).unwrap_or(i64::MAX))
        }),
        cert_fingerprint: a.cert_fingerprint.map(|f| f.to_ascii_lowercase()),
        profile: None,
        state: KeyState::Enabled,
        revoked_at_ms: None,
        secret_ciphertext: None,
        public_key: None,
        created_at_ms: now_ms(),
        permissions: rampart_store::KeyPermissions::default(),
    };
    if is_hmac(scheme) {
        if a.public_key.is_some() {
            return Err(format!(
                "`{}` keys are shared secrets; --public-key does not apply",
                scheme.as_str()
            ));
        }
        let (shown, raw) = new_secret(scheme);
        key.secret_ciphertext = Some(
            vault
                .seal_api_secret(&key.account_id, &key_id, &raw)
                .await
                .map_err(err)?,
        );
        if let (Some(o), Some(s)) = (out.as_object_mut(), shown.as_object()) {
            o.extend(s.clone());
        }
    } else {
        let path = a.public_key.ok_or_else(|| {
            format!(
                "`{}` keys are registered by public key: pass --public-key FILE",
                scheme.as_str()
            )
        })?;
        let pem =
            std::fs::read_to_string(&path).map_err(|e| format!("`{}`: {e}", path.display()))?;
        key.public_key = Some(public_key_from_pem(&pem, scheme)?);
    }
    if let Some(e) = key.expires_at_ms {
        if let Some(o) = out.as_object_mut() {
            o.insert("expires_at_ms".into(), json!(e));
        }
    }
    if a.nonce_window > 0 && scheme != Scheme::KrakenHmac {
        return Err("--nonce-window applies to kraken-hmac-sha512 keys only".to_owned());
    }
    store.create_api_key(&key).await.map_err(err)?;
    if a.nonce_window > 0 {
        store
            .set_key_nonce_window(&key_id, a.nonce_window)
            .await
            .map_err(err)?;
        if let Some(o) = out.as_object_mut() {
            o.insert("nonce_window".into(), json!(a.nonce_window));
        }
    }
    println!("{}", serde_json::to_string_pretty(&out).map_err(err)?);
    if is_hmac(scheme) {
        eprintln!("the secret is shown once: store it now; Rampart keeps it only encrypted");
    }
    Ok(key)
}

fn describe(k: &ApiKey) -> serde_json::Value {
    json!({
        "key_id": k.key_id,
        "account": k.account_id,
        "scheme": k.scheme,
        "scopes": k.scopes,
        "allowed_networks": k.allowed_cidrs,
        "expires_at_ms": k.expires_at_ms,
        "cert_fingerprint": k.cert_fingerprint,
        "state": k.state.as_str(),
        "revoked_at_ms": k.revoked_at_ms,
        "created_at_ms": k.created_at_ms,
    })
}

/// `keys list`: one line per key (every account, or one).
///
/// # Errors
/// Store errors.
pub async fn list(vault: &Vault, account: Option<String>) -> Result<(), String> {
    let store = vault.store();
    let keys = match account {
        Some(a) => store.list_api_keys(&a).await.map_err(err)?,
        None => {
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .list_all_api_keys(after.as_deref(), 1000)
                    .await
                    .map_err(err)?;
                let Some(last) = page.last() else { break };
                after = Some(last.key_id.clone());
                all.extend(page);
            }
            all
        }
    };
    println!(
        "{:<26} {:<16} {:<22} {:<8} scopes",
        "key id", "account", "scheme", "state"
    );
    for k in keys {
        println!(
            "{:<26} {:<16} {:<22} {:<8} {}",
            k.key_id,
            k.account_id,
            k.scheme,
            k.state.as_str(),
            k.scopes.join(",")
        );
    }
    Ok(())
}

/// `keys show KEY_ID`: the key's settings (never its secret).
///
/// # Errors
/// Unknown key, store errors.
pub async fn show(vault: &Vault, key_id: &str) -> Result<(), String> {
    let k = vault.store().get_api_key(key_id).await.map_err(err)?;
    let mut v = describe(&k);
    if let Ok(Some((_, until))) = vault.store().get_previous_secret(key_id).await {
        if let Some(o) = v.as_object_mut() {
            o.insert("previous_secret_valid_until_ms".into(), json!(until));
        }
    }
    println!("{}", serde_json::to_string_pretty(&v).map_err(err)?);
    Ok(())
}

/// `keys revoke KEY_ID`.
///
/// # Errors
/// Unknown key, store errors.
pub async fn revoke(vault: &Vault, key_id: &str) -> Result<String, String> {
    let account = vault
        .store()
        .get_api_key(key_id)
        .await
        .map_err(err)?
        .account_id;
    vault
        .store()
        .revoke_api_key(key_id, now_ms())
        .await
        .map_err(err)?;
    println!("key `{key_id}` revoked (running gateways refuse it within their key cache TTL, default 1 s)");
    Ok(account)
}

/// `keys rotate KEY_ID`: a new secret, shown once; the old one keeps
/// working for `overlap`, then stops.
///
/// # Errors
/// Unknown key, asymmetric key, store errors.
pub async fn rotate(vault: &Vault, key_id: &str, overlap: Duration) -> Result<String, String> {
    let store = vault.store();
    let key = store.get_api_key(key_id).await.map_err(err)?;
    if key.state == KeyState::Revoked {
        return Err(format!("key `{key_id}` is revoked"));
    }
    let scheme =
        Scheme::parse(&key.scheme).ok_or_else(|| format!("unknown scheme `{}`", key.scheme))?;
    if !is_hmac(scheme) {
        return Err(
            "asymmetric keys rotate by registering a new public key with `keys create`".to_owned(),
        );
    }
    let old_plain = vault.open_api_secret(&key).await.map_err(err)?;
    let old_ct = key
        .secret_ciphertext
        .clone()
        .ok_or_else(|| "the key has no secret".to_owned())?;
    let (shown, raw) = new_secret(scheme);
    let new_ct = vault
        .seal_api_secret(&key.account_id, key_id, &raw)
        .await
        .map_err(err)?;
    let until = now_ms().saturating_add(i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX));
    store
        .rotate_api_key_secret(key_id, &new_ct, until)
        .await
        .map_err(err)?;
    // The moved ciphertext is bound to the `secret` field: re-seal it for
    // `previous_secret` (compare-and-swap on the bytes just moved).
    let loc = CipherRef::ApiKeyPreviousSecret {
        key_id: key_id.to_owned(),
    };
    let resealed = vault
        .seal(&loc, &key.account_id, &old_plain)
        .await
        .map_err(err)?;
    let applied = store
        .swap_ciphertexts(&[CipherSwap {
            location: loc,
            expected: old_ct,
            new: resealed,
        }])
        .await
        .map_err(err)?;
    if applied.first() != Some(&true) {
        return Err("the key changed during rotation; run it again".to_owned());
    }
    let mut out = json!({ "key_id": key_id, "scheme": scheme.as_str(), "previous_secret_valid_until_ms": until });
    if let (Some(o), Some(s)) = (out.as_object_mut(), shown.as_object()) {
        o.extend(s.clone());
    }
    println!("{}", serde_json::to_string_pretty(&out).map_err(err)?);
    eprintln!("the new secret is shown once; the old one works until the overlap ends");
    Ok(key.account_id)
}
