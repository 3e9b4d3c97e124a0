//! `presign`: writes a file of unique pre-signed HTTP/1.1 requests (each
//! nonce used once) for the load benchmarks (`bench/auth.sh`,
//! `bench/authz.sh`; replayed by wrk with `bench/presigned.lua`).
//!
//! ```text
//! presign keygen PRIVATE_PKCS8 PUBLIC_PEM          # an Ed25519 key pair
//! presign sign SCHEME KEY_ID KEYFILE COUNT AUTHORITY PATH OUT [--method M] [--order]
//!   SCHEME    hmac-sha256 (KEYFILE holds the base64 secret) | ed25519 (PKCS#8 file)
//!   --method  request method (default GET; POST with --order)
//!   --order   each request carries a distinct limit order as its JSON body
//!             (client_order_id `b-<n>`), with Content-Type, Content-Length
//!             and an RFC 9530 Content-Digest (sha-256) covered by the signature
//! ```
//! Requests are separated by a line `#####`.
#![allow(clippy::print_stdout, reason = "a command-line tool")]

use std::io::Write;
use std::process::ExitCode;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use rampart_auth::digest::{content_digest, DigestAlg, CONTENT_DIGEST};
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{RequestView, Scheme};
use zeroize::Zeroizing;

/// Usage text.
const USAGE: &str = "usage: presign keygen PRIVATE PUBLIC | presign sign SCHEME KEY_ID KEYFILE COUNT AUTHORITY PATH OUT [--method METHOD] [--order]";

fn fail(msg: &str) -> ExitCode {
    eprintln!("presign: {msg}");
    ExitCode::from(2)
}

/// The order body of request `n` (`--order`).
fn order_body(n: usize) -> String {
    format!(
        r#"{{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"64000.00","client_order_id":"b-{n}","time_in_force":"gtc"}}"#
    )
}

/// `presign sign` options after the positional arguments.
struct SignOpts {
    method: Method,
    order: bool,
}

fn sign_opts(rest: &[&str]) -> Result<SignOpts, String> {
    let mut method: Option<Method> = None;
    let mut order = false;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--method" => {
                let m = it.next().ok_or("--method needs a value")?;
                method = Some(
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("invalid method {m:?}"))?,
                );
            }
            "--order" => order = true,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let method = method.unwrap_or(if order { Method::POST } else { Method::GET });
    Ok(SignOpts { method, order })
}

fn keygen(private: &str, public: &str) -> ExitCode {
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

#[allow(
    clippy::too_many_arguments,
    reason = "the command's positional arguments"
)]
fn sign(
    scheme: &str,
    key_id: &str,
    keyfile: &str,
    count: &str,
    authority: &str,
    path: &str,
    out: &str,
    rest: &[&str],
) -> ExitCode {
    let opts = match sign_opts(rest) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let Ok(count) = count.parse::<usize>() else {
        return fail("COUNT must be a number");
    };
    let Ok(raw) = std::fs::read(keyfile) else {
        return fail("cannot read KEYFILE");
    };
    let (scheme, key) = match scheme {
        "hmac-sha256" => {
            let text = String::from_utf8_lossy(&raw);
            let Ok(secret) = base64::engine::general_purpose::STANDARD.decode(text.trim()) else {
                return fail("KEYFILE must hold the base64 secret");
            };
            (
                Scheme::Rfc9421HmacSha256,
                SigningKey::Hmac(Zeroizing::new(secret)),
            )
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
    let method = opts.method.as_str();
    let mut headers = HeaderMap::new();
    for i in 0..count {
        let nonce = format!("{prefix:016x}{i:x}");
        let body = if opts.order {
            order_body(i)
        } else {
            String::new()
        };
        // Body headers, as they go on the wire; Content-Digest is covered.
        let mut extra = String::new();
        if opts.order {
            let digest = content_digest(DigestAlg::Sha256, body.as_bytes());
            let Ok(value) = HeaderValue::from_str(&digest) else {
                return fail("invalid Content-Digest value");
            };
            headers.insert(CONTENT_DIGEST, value);
            extra = format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\nContent-Digest: {digest}\r\n",
                body.len()
            );
        } else if opts.method != Method::GET && opts.method != Method::HEAD {
            extra.push_str("Content-Length: 0\r\n");
        }
        let view = RequestView {
            method: &opts.method,
            path_and_query: path,
            authority,
            scheme: "https",
            headers: &headers,
            body: body.as_bytes(),
        };
        let Ok(sig) = rfc9421::sign(&view, key_id, scheme, &key, created, &nonce, &[]) else {
            return fail("signing failed");
        };
        if write!(
            w,
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{extra}Signature-Input: {}\r\nSignature: {}\r\n\r\n{body}\n#####\n",
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["keygen", private, public] => keygen(private, public),
        ["sign", scheme, key_id, keyfile, count, authority, path, out, rest @ ..] => {
            sign(scheme, key_id, keyfile, count, authority, path, out, rest)
        }
        _ => fail(USAGE),
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_le_bytes(b)
}
