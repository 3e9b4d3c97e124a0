//! RFC 9530 `Content-Digest`: parsing, verification, generation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use rampart_auth::digest::{
    content_digest, parse_content_digest, verify_content_digest, DigestAlg,
};
use rampart_auth::AuthError;

// RFC 9530 §2 / Appendix: `{"hello": "world"}`.
const BODY: &[u8] = br#"{"hello": "world"}"#;
const SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
const SHA512: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

const MISMATCH: AuthError = AuthError::Digest("Content-Digest does not match the body");
const MALFORMED: AuthError = AuthError::Digest("malformed Content-Digest");

fn headers(lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append("content-digest", HeaderValue::from_str(l).unwrap());
    }
    h
}

#[test]
fn generates_rfc_values() {
    assert_eq!(content_digest(DigestAlg::Sha256, BODY), SHA256);
    assert_eq!(content_digest(DigestAlg::Sha512, BODY), SHA512);
    assert_eq!(DigestAlg::Sha256.as_str(), "sha-256");
    assert_eq!(DigestAlg::from_key("sha-512"), Some(DigestAlg::Sha512));
    assert_eq!(DigestAlg::from_key("md5"), None);
}

#[test]
fn parses_known_and_skips_unknown() {
    let v = parse_content_digest(&format!("md5=:AAAA:, {SHA256}, unixsum=?1, {SHA512}")).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].0, DigestAlg::Sha256);
    assert_eq!(v[0].1.len(), 32);
    assert_eq!(v[1].0, DigestAlg::Sha512);
    assert_eq!(v[1].1.len(), 64);
    assert!(parse_content_digest("md5=:AAAA:").unwrap().is_empty());
    assert!(parse_content_digest("").unwrap().is_empty());
    // Parameters are ignored; missing padding is accepted (RFC 8941 §3.3.5).
    let v =
        parse_content_digest("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE:;p=1").unwrap();
    assert_eq!(v[0].1.len(), 32);
}

#[test]
fn malformed_values() {
    for bad in [
        "sha-256",
        "sha-256=\"abc\"",
        "sha-256=(:AAAA:)",
        "sha-256=:AAAA",
        "sha-256=:A*AA:",
        "sha-256=:AAB=:", // non-zero trailing bits
        "sha-256=:AAAA:,",
        "sha-256=:AAAA:, sha-256=:AAAA:",
        "SHA-256=:AAAA:",
        "sha-256=:AAAA: sha-512=:AAAA:",
    ] {
        assert!(
            matches!(parse_content_digest(bad), Err(AuthError::Digest(_))),
            "{bad:?} should be malformed"
        );
    }
    let long = format!("{SHA256}, x=\"{}\"", "a".repeat(8 * 1024));
    assert_eq!(
        parse_content_digest(&long),
        Err(AuthError::Digest("Content-Digest is too long"))
    );
}

#[test]
fn verifies() {
    verify_content_digest(&headers(&[SHA256]), BODY).unwrap();
    verify_content_digest(&headers(&[SHA512]), BODY).unwrap();
    verify_content_digest(&headers(&[&format!("{SHA256}, {SHA512}")]), BODY).unwrap();
    verify_content_digest(&headers(&[&format!("md5=:AAAA:, {SHA512}")]), BODY).unwrap();
    // Several lines are one field.
    verify_content_digest(&headers(&[SHA256, SHA512]), BODY).unwrap();
    verify_content_digest(&headers(&["md5=:AAAA:", SHA256]), BODY).unwrap();
    // Empty body.
    verify_content_digest(&headers(&[&content_digest(DigestAlg::Sha256, b"")]), b"").unwrap();
}

#[test]
fn rejects() {
    assert_eq!(
        verify_content_digest(&HeaderMap::new(), BODY),
        Err(AuthError::Digest(
            "missing Content-Digest for a request body"
        ))
    );
    assert_eq!(
        verify_content_digest(&headers(&[SHA256]), b"{\"hello\": \"World\"}"),
        Err(MISMATCH)
    );
    assert_eq!(
        verify_content_digest(&headers(&[SHA256]), b""),
        Err(MISMATCH)
    );
    // Every known digest must match, not just one.
    let wrong512 = content_digest(DigestAlg::Sha512, b"other");
    assert_eq!(
        verify_content_digest(&headers(&[&format!("{SHA256}, {wrong512}")]), BODY),
        Err(MISMATCH)
    );
    assert_eq!(
        verify_content_digest(&headers(&[SHA256, &wrong512]), BODY),
        Err(MISMATCH)
    );
    // A sha-256 digest under the sha-512 key (wrong length) does not match.
    assert_eq!(
        verify_content_digest(&headers(&[&SHA256.replace("sha-256", "sha-512")]), BODY),
        Err(MISMATCH)
    );
    // Truncated and over-long values.
    assert_eq!(
        verify_content_digest(
            &headers(&["sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWx:"]),
            BODY
        ),
        Err(MISMATCH)
    );
    let long = format!("sha-256=:{}:", "A".repeat(200));
    assert_eq!(
        verify_content_digest(&headers(&[&long]), BODY),
        Err(MISMATCH)
    );
    // Only unknown algorithms.
    assert_eq!(
        verify_content_digest(&headers(&["md5=:AAAA:, sha=:AAAA:"]), BODY),
        Err(AuthError::Digest(
            "Content-Digest has no sha-256 or sha-512 digest"
        ))
    );
    assert_eq!(
        verify_content_digest(&headers(&["sha-256=:X48E9q*:"]), BODY),
        Err(MALFORMED)
    );
    assert_eq!(
        verify_content_digest(&headers(&["sha-256=:AAB=:"]), BODY),
        Err(MALFORMED)
    );
    let mut bin = HeaderMap::new();
    bin.insert(
        "content-digest",
        HeaderValue::from_bytes(b"sha-256=:\xff:").unwrap(),
    );
    assert_eq!(verify_content_digest(&bin, BODY), Err(MALFORMED));
    // Many lines add up to more than 8 KiB.
    let line = format!("md5=:{}:", "A".repeat(1000));
    let many: Vec<&str> = std::iter::repeat_n(line.as_str(), 9).collect();
    assert_eq!(
        verify_content_digest(&headers(&many), BODY),
        Err(AuthError::Digest("Content-Digest is too long"))
    );
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,400}") {
        let _ = parse_content_digest(&s);
    }

    #[test]
    fn round_trip(body in proptest::collection::vec(any::<u8>(), 0..512), sha512 in any::<bool>()) {
        let alg = if sha512 { DigestAlg::Sha512 } else { DigestAlg::Sha256 };
        let value = content_digest(alg, &body);
        prop_assert_eq!(parse_content_digest(&value).unwrap()[0].0, alg);
        prop_assert_eq!(verify_content_digest(&headers(&[&value]), &body), Ok(()));
    }

    #[test]
    fn any_body_change_is_caught(
        body in proptest::collection::vec(any::<u8>(), 1..256),
        pos in any::<usize>(),
        x in 1u8..=255,
    ) {
        let value = content_digest(DigestAlg::Sha256, &body);
        let mut changed = body.clone();
        let i = pos % changed.len();
        changed[i] ^= x;
        prop_assert_eq!(verify_content_digest(&headers(&[&value]), &changed), Err(MISMATCH));
    }
}
