//! `demo-credentials.json` (CONTRACT.md) and the signing keys in it.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use rampart_auth::profiles::jwt::{Alg, JwtSigner};
use rampart_auth::profiles::kraken;
use rampart_auth::rfc9421::SigningKey;
use rampart_auth::{KeyMaterial, Scheme};
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::ClientError;

/// A key's private material, shaped for its scheme. `Debug` never shows it.
#[non_exhaustive]
pub enum Material {
    /// An RFC 9421 key (`hmac-sha256`, `ed25519`, `ecdsa-p256-sha256`).
    Rfc9421(SigningKey),
    /// A Binance-style HMAC-SHA256 secret: the bytes of the ASCII secret.
    BinanceHmac(Zeroizing<Vec<u8>>),
    /// A Binance-style Ed25519 key pair.
    BinanceEd25519(Ed25519KeyPair),
    /// A Kraken-style HMAC-SHA512 secret: the base64-decoded bytes.
    KrakenHmac(Zeroizing<Vec<u8>>),
    /// A Coinbase-style JWT key (ES256 or EdDSA).
    CoinbaseJwt(JwtSigner),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Material::Rfc9421(_) => "Material::Rfc9421(**REDACTED**)",
            Material::BinanceHmac(_) => "Material::BinanceHmac(**REDACTED**)",
            Material::BinanceEd25519(_) => "Material::BinanceEd25519(**REDACTED**)",
            Material::KrakenHmac(_) => "Material::KrakenHmac(**REDACTED**)",
            Material::CoinbaseJwt(_) => "Material::CoinbaseJwt(**REDACTED**)",
        })
    }
}

impl Material {
    /// The scheme this material signs for.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        match self {
            Material::Rfc9421(key) => key.scheme(),
            Material::BinanceHmac(_) => Scheme::BinanceHmac,
            Material::BinanceEd25519(_) => Scheme::BinanceEd25519,
            Material::KrakenHmac(_) => Scheme::KrakenHmac,
            Material::CoinbaseJwt(signer) => match signer.alg() {
                Alg::Es256 => Scheme::CoinbaseJwtEs256,
                Alg::EdDsa => Scheme::CoinbaseJwtEdDsa,
            },
        }
    }
}

/// One API key a client signs with: its name, public id, scheme and
/// private material. `Debug` shows no material.
pub struct ClientKey {
    name: String,
    key_id: String,
    scopes: Vec<String>,
    material: Material,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field("scheme", &self.scheme())
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// A key from its parts; the scheme follows from `material`.
    #[must_use]
    pub fn new(name: impl Into<String>, key_id: impl Into<String>, material: Material) -> Self {
        ClientKey {
            name: name.into(),
            key_id: key_id.into(),
            scopes: Vec::new(),
            material,
        }
    }

    /// Sets the scopes the credentials file lists (informational: the
    /// gateway decides).
    #[must_use]
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    /// A key from the fields of a `demo-credentials.json` entry, read as the
    /// gateway reads them when it seeds its store: `secret` (the bytes of
    /// an ASCII secret) or else `secret_b64` (standard base64) for the HMAC
    /// schemes, `private_key_pem` (PKCS#8 Ed25519 or P-256, or SEC1
    /// `EC PRIVATE KEY`) for the others.
    ///
    /// # Errors
    ///
    /// [`ClientError::Key`] for an unknown scheme or missing or invalid
    /// material (the message never contains the material).
    pub fn from_fields(
        name: &str,
        key_id: &str,
        scheme: &str,
        secret: Option<&str>,
        secret_b64: Option<&str>,
        private_key_pem: Option<&str>,
    ) -> Result<Self, ClientError> {
        let label = if name.is_empty() { key_id } else { name };
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| ClientError::key(label, format!("unknown scheme `{scheme}`")))?;
        let hmac = || -> Result<Zeroizing<Vec<u8>>, ClientError> {
            let bytes = match (secret, secret_b64) {
                (Some(ascii), _) => Zeroizing::new(ascii.as_bytes().to_vec()),
                (None, Some(b64)) if b64.trim().is_empty() => {
                    return Err(ClientError::key(label, "the secret is empty"))
                }
                (None, Some(b64)) if scheme == Scheme::KrakenHmac => kraken::decode_secret(b64)
                    .map_err(|_| ClientError::key(label, "`secret_b64` is not base64"))?,
                (None, Some(b64)) => Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|_| ClientError::key(label, "`secret_b64` is not base64"))?,
                ),
                (None, None) => {
                    return Err(ClientError::key(
                        label,
                        format!("scheme {} needs `secret` or `secret_b64`", scheme.as_str()),
                    ))
                }
            };
            if bytes.is_empty() {
                return Err(ClientError::key(label, "the secret is empty"));
            }
            Ok(bytes)
        };
        let pem = || -> Result<JwtSigner, ClientError> {
            let pem = private_key_pem.ok_or_else(|| {
                ClientError::key(
                    label,
                    format!("scheme {} needs `private_key_pem`", scheme.as_str()),
                )
            })?;
            JwtSigner::from_pem(pem).map_err(|e| ClientError::key(label, e.to_string()))
        };
        let wrong_key = |want: &str| {
            ClientError::key(
                label,
                format!(
                    "scheme {} needs {want} in `private_key_pem`",
                    scheme.as_str()
                ),
            )
        };
        let material = match scheme {
            Scheme::Rfc9421HmacSha256 => Material::Rfc9421(SigningKey::Hmac(hmac()?)),
            Scheme::BinanceHmac => Material::BinanceHmac(hmac()?),
            Scheme::KrakenHmac => Material::KrakenHmac(hmac()?),
            Scheme::Rfc9421Ed25519 => match pem()? {
                JwtSigner::EdDsa(pair) => Material::Rfc9421(SigningKey::Ed25519(pair)),
                JwtSigner::Es256(_) => return Err(wrong_key("an Ed25519 key")),
            },
            Scheme::Rfc9421EcdsaP256 => match pem()? {
                JwtSigner::Es256(pair) => Material::Rfc9421(SigningKey::EcdsaP256(pair)),
                JwtSigner::EdDsa(_) => return Err(wrong_key("a P-256 key")),
            },
            Scheme::BinanceEd25519 => match pem()? {
                JwtSigner::EdDsa(pair) => Material::BinanceEd25519(pair),
                JwtSigner::Es256(_) => return Err(wrong_key("an Ed25519 key")),
            },
            Scheme::CoinbaseJwtEs256 => match pem()? {
                signer @ JwtSigner::Es256(_) => Material::CoinbaseJwt(signer),
                JwtSigner::EdDsa(_) => return Err(wrong_key("a P-256 key")),
            },
            Scheme::CoinbaseJwtEdDsa => match pem()? {
                signer @ JwtSigner::EdDsa(_) => Material::CoinbaseJwt(signer),
                JwtSigner::Es256(_) => return Err(wrong_key("an Ed25519 key")),
            },
            _ => {
                return Err(ClientError::key(
                    label,
                    format!("scheme {} is not supported by this client", scheme.as_str()),
                ))
            }
        };
        Ok(ClientKey::new(name, key_id, material))
    }

    /// The key's name in the credentials file (`trader-hmac`, …).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key id the gateway knows the key by.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key's signing scheme.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.material.scheme()
    }

    /// The scopes the credentials file lists.
    #[must_use]
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The private material.
    #[must_use]
    pub fn material(&self) -> &Material {
        &self.material
    }

    /// What the gateway stores to verify this key's requests: a copy of
    /// the shared secret, or the public key.
    ///
    /// # Errors
    ///
    /// [`ClientError::Key`] if a public key has an unexpected length
    /// (cannot happen with aws-lc-rs key pairs).
    pub fn verifying_key(&self) -> Result<KeyMaterial, ClientError> {
        let bad = |e: rampart_auth::AuthError| ClientError::key(&self.name, e.to_string());
        Ok(match &self.material {
            Material::Rfc9421(key) => key.verifying_key().map_err(bad)?,
            Material::BinanceHmac(secret) | Material::KrakenHmac(secret) => {
                KeyMaterial::Hmac(secret.clone())
            }
            Material::BinanceEd25519(pair) => KeyMaterial::Ed25519(
                pair.public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| ClientError::key(&self.name, "Ed25519 public key length"))?,
            ),
            Material::CoinbaseJwt(signer) => signer.public_key().map_err(bad)?,
        })
    }
}

/// The client's copy of an account's credentials: the
/// `demo-credentials.json` shape of CONTRACT.md. Unknown fields are
/// ignored (keys gain fields as features land). `Debug` shows no secret.
pub struct Credentials {
    /// The gateway's base URL (`https://127.0.0.1:8443`).
    pub gateway_url: String,
    /// The admin listener's base URL, when the file has one.
    pub admin_url: Option<String>,
    /// The CA certificate (PEM) that signs the gateway's certificate. A
    /// relative path in the file is resolved against the file's directory
    /// by [`Credentials::load`].
    pub ca_cert_path: PathBuf,
    /// The account the keys belong to.
    pub account: String,
    /// The API keys, in file order.
    pub keys: Vec<ClientKey>,
    /// Withdrawal addresses already on the account's allow list.
    pub withdrawal_addresses: Vec<String>,
    totp_secret_base32: Option<Zeroizing<String>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("gateway_url", &self.gateway_url)
            .field("admin_url", &self.admin_url)
            .field("ca_cert_path", &self.ca_cert_path)
            .field("account", &self.account)
            .field("keys", &self.keys)
            .field("withdrawal_addresses", &self.withdrawal_addresses)
            .field(
                "totp_secret_base32",
                &self.totp_secret_base32.as_ref().map(|_| "**REDACTED**"),
            )
            .finish()
    }
}

fn secret_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Zeroizing::new))
}

#[derive(Deserialize)]
struct RawKey {
    #[serde(default)]
    name: String,
    key_id: String,
    scheme: String,
    #[serde(default, deserialize_with = "secret_field")]
    secret: Option<Zeroizing<String>>,
    #[serde(default, deserialize_with = "secret_field")]
    secret_b64: Option<Zeroizing<String>>,
    #[serde(default, deserialize_with = "secret_field")]
    private_key_pem: Option<Zeroizing<String>>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct RawCredentials {
    gateway_url: String,
    #[serde(default)]
    admin_url: Option<String>,
    ca_cert_path: PathBuf,
    account: String,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default, deserialize_with = "secret_field")]
    totp_secret_base32: Option<Zeroizing<String>>,
    #[serde(default)]
    withdrawal_addresses: Vec<String>,
}

/// A JSON error without the input's text: serde's messages can quote a
/// value, which may be a secret.
fn json_error(e: &serde_json::Error) -> ClientError {
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Eof => "unexpected end of JSON",
        serde_json::error::Category::Data => {
            "not the demo-credentials.json shape (a field is missing or has the wrong type)"
        }
    };
    ClientError::Credentials(format!("{what} at line {} column {}", e.line(), e.column()))
}

impl Credentials {
    /// Reads a credentials file. A relative `ca_cert_path` is resolved
    /// against the file's directory.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] when the file cannot be read,
    /// [`ClientError::Credentials`] when it is not the expected shape (the
    /// message has a line and column, never a value), [`ClientError::Key`]
    /// when a key is unusable.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        })?);
        let mut creds = Self::from_json(&bytes)?;
        if creds.ca_cert_path.is_relative() {
            if let Some(dir) = path.parent() {
                creds.ca_cert_path = dir.join(&creds.ca_cert_path);
            }
        }
        Ok(creds)
    }

    /// Parses credentials from JSON text (`ca_cert_path` kept as written).
    ///
    /// # Errors
    ///
    /// As [`Credentials::load`], less the I/O.
    pub fn from_json(json: &[u8]) -> Result<Self, ClientError> {
        let raw: RawCredentials = serde_json::from_slice(json).map_err(|e| json_error(&e))?;
        let keys = raw
            .keys
            .into_iter()
            .map(|k| {
                ClientKey::from_fields(
                    &k.name,
                    &k.key_id,
                    &k.scheme,
                    k.secret.as_deref().map(String::as_str),
                    k.secret_b64.as_deref().map(String::as_str),
                    k.private_key_pem.as_deref().map(String::as_str),
                )
                .map(|key| key.with_scopes(k.scopes))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Credentials {
            gateway_url: raw.gateway_url,
            admin_url: raw.admin_url,
            ca_cert_path: raw.ca_cert_path,
            account: raw.account,
            keys,
            withdrawal_addresses: raw.withdrawal_addresses,
            totp_secret_base32: raw.totp_secret_base32,
        })
    }

    /// The key with this name, or else with this key id.
    #[must_use]
    pub fn key(&self, name_or_key_id: &str) -> Option<&ClientKey> {
        self.keys
            .iter()
            .find(|k| k.name == name_or_key_id)
            .or_else(|| self.keys.iter().find(|k| k.key_id == name_or_key_id))
    }

    /// The account's TOTP seed (RFC 4648 base32), when the file has one.
    #[must_use]
    pub fn totp_secret_base32(&self) -> Option<&str> {
        self.totp_secret_base32.as_deref().map(String::as_str)
    }

    /// The CA certificate PEM, read from [`Credentials::ca_cert_path`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] when it cannot be read.
    pub fn read_ca_pem(&self) -> Result<Vec<u8>, ClientError> {
        std::fs::read(&self.ca_cert_path).map_err(|source| ClientError::Io {
            path: self.ca_cert_path.clone(),
            source,
        })
    }
}
