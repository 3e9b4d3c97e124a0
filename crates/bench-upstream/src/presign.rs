//! `presign`: writes a file of unique pre-signed HTTP/1.1 requests (each
//! nonce used once) for the authentication load benchmark (`bench/auth.sh`,
//! replayed by wrk with `bench/presigned.lua`).
//!
//! ```text
//! presign keygen PRIVATE_PKCS8 PUBLIC_PEM          # an Ed25519 key pair
//! presign sign SCHEME KEY_ID KEYFILE COUNT AUTHORITY PATH OUT
//!   SCHEME  hmac-sha256 (KEYFILE holds the base64 secret) | ed25519 (PKCS#8 file)
//! ```
//! Requests are separated by a line `#####`.
#![allow(clippy::print_stdout, reason = "a command-line tool")]

use std::io::Write;
use std::process::ExitCode;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use http::{HeaderMap, Method};
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{RequestView, Scheme};
use zeroize::Zeroizing;

fn fail(msg: &str) -> ExitCode {
    eprintln!("presign: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["keygen", private, public] => {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let Ok(pkcs8) = Ed25519KeyPair::generate_pkcs8(&rng) else {
                return fail("key generation failed");
            };
            let Ok(pair) = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()) else {
                return fail("key generation failed");
            };
            let mut spki = vec![
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ];
            spki.extend_from_slice(pair.public_key().as_ref());
            let pem = format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(&spki)
            );
            if std::fs::write(private, pkcs8.as_ref()).is_err() || std::fs::write(public, pem).is_err() {
                return fail("cannot write the key files");
            }
            ExitCode::SUCCESS
        }
        ["sign", scheme, key_id, keyfile, count, authority, path, out] => {
            let Ok(count) = count.parse::<usize>() else {
                return fail("COUNT must be a number");
            };
            let Ok(raw) = std::fs::read(keyfile) else {
                return fail("cannot read KEYFILE");
            };
            let (scheme, key) = match *scheme {
                "hmac-sha256" => {
                    let text = String::from_utf8_lossy(&raw);
                    let Ok(secret) = base64::engine::general_purpose::STANDARD.decode(text.trim())
                    else {
                        return fail("KEYFILE must hold the base64 secret");
                    };
                    (Scheme::Rfc9421HmacSha256, SigningKey::Hmac(Zeroizing::new(secret)))
                }
                "ed25519" => match Ed25519KeyPair::from_pkcs8(&raw) {
                    Ok(k) => (Scheme::Rfc9421Ed25519, SigningKey::Ed25519(k)),
                    Err(_) => return fail("KEYFILE must be an Ed25519 PKCS#8 key"),
                },
                _ => return fail("SCHEME must be hmac-sha256 or ed25519"),
            };
            let Ok(file) = std::fs::File::create(out) else {
                return fail("cannot create OUT");
            };
            let mut w = std::io::BufWriter::new(file);
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            let prefix: u64 = rand_u64();
            let headers = HeaderMap::new();
            for i in 0..count {
                let nonce = format!("{prefix:016x}{i:x}");
                let view = RequestView {
                    method: &Method::GET,
                    path_and_query: path,
                    authority,
                    scheme: "https",
                    headers: &headers,
                    body: b"",
                };
                let Ok(sig) = rfc9421::sign(&view, key_id, scheme, &key, created, &nonce, &[]) else {
                    return fail("signing failed");
                };
                if write!(
                    w,
                    "GET {path} HTTP/1.1\r\nHost: {authority}\r\nSignature-Input: {}\r\nSignature: {}\r\n\r\n\n#####\n",
                    sig.signature_input, sig.signature
                )
                .is_err()
                {
                    return fail("write failed");
                }
            }
            if w.flush().is_err() {
                return fail("write failed");
            }
            ExitCode::SUCCESS
        }
        _ => fail("usage: presign keygen PRIVATE PUBLIC | presign sign SCHEME KEY_ID KEYFILE COUNT AUTHORITY PATH OUT"),
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_le_bytes(b)
}
