#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Signed checkpoints: the golang.org/x/mod `sumdb/note` reference
//! vector, round trips, key ids and tampering.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rampart_audit::note::{
    key_id, open_checkpoint, open_note, parse_checkpoint_unverified, sign_checkpoint, sign_note,
    Checkpoint, CheckpointSigner, Ed25519Signer, NoteError, VerifierKey, MAX_NOTE_BYTES,
};

/// The verifier key, signer key and signed text of the tests of
/// golang.org/x/mod `sumdb/note` (also the example of the C2SP spec).
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n";
const PETER_SIG: &str =
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

fn peter_signer() -> Ed25519Signer {
    let raw = B64.decode(PETER_SKEY_B64).unwrap();
    assert_eq!(raw[0], 0x01);
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    Ed25519Signer::from_seed("PeterNeumann", &seed).unwrap()
}

fn peter_note() -> String {
    format!("{PETER_TEXT}\n\u{2014} PeterNeumann {PETER_SIG}\n")
}

#[test]
fn go_reference_vector_signs_and_verifies() {
    let signer = peter_signer();
    let vkey = VerifierKey::parse(PETER_VKEY).unwrap();
    assert_eq!(signer.verifier_key(), vkey);
    assert_eq!(vkey.to_string(), PETER_VKEY);
    assert_eq!(vkey.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(
        key_id("PeterNeumann", &signer.public_key()),
        [0xc7, 0x4f, 0x20, 0xa3]
    );
    // Ed25519 is deterministic: signing gives the reference note exactly.
    assert_eq!(sign_note(PETER_TEXT, &signer).unwrap(), peter_note());
    let note = peter_note();
    let (text, key) = open_note(&note, std::slice::from_ref(&vkey)).unwrap();
    assert_eq!(text, PETER_TEXT);
    assert_eq!(key, &vkey);
}

#[test]
fn verifier_key_parse_rejects_manglings() {
    assert!(VerifierKey::parse(PETER_VKEY).is_ok());
    let bad = [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+xc74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA",
    ];
    for b in bad {
        assert!(VerifierKey::parse(b).is_err(), "{b:?}");
    }
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint {
        origin: "rampart.example/audit".to_owned(),
        size,
        root: [size as u8; 32],
    }
}

#[test]
fn checkpoint_round_trip() {
    let signer = Ed25519Signer::generate("rampart.example/audit").unwrap();
    let vkey = signer.verifier_key();
    for size in [0, 1, 2, 1000, u64::MAX] {
        let cp = checkpoint(size);
        let note = sign_checkpoint(&cp, &signer).unwrap();
        assert!(note.starts_with(&format!("rampart.example/audit\n{size}\n")));
        assert_eq!(open_checkpoint(&note, &vkey).unwrap(), cp);
        assert_eq!(parse_checkpoint_unverified(&note).unwrap(), cp);
        let vtext = vkey.to_string();
        assert_eq!(VerifierKey::parse(&vtext).unwrap(), vkey);
    }
}

#[test]
fn unknown_keys_are_ignored_but_a_bad_known_signature_rejects() {
    let a = Ed25519Signer::generate("log-a").unwrap();
    let b = Ed25519Signer::generate("log-b").unwrap();
    let cp = checkpoint(5);
    let note_a = sign_checkpoint(&cp, &a).unwrap();
    let note_b = sign_checkpoint(&cp, &b).unwrap();
    // Cosigned: text + both signature lines.
    let sig_b = note_b.rsplit_once("\n\n").unwrap().1;
    let both = format!("{note_a}{sig_b}");
    assert_eq!(open_checkpoint(&both, &a.verifier_key()).unwrap(), cp);
    assert_eq!(open_checkpoint(&both, &b.verifier_key()).unwrap(), cp);
    // Only b's signature: a's key finds none.
    assert!(matches!(
        open_checkpoint(&note_b, &a.verifier_key()),
        Err(NoteError::Unverified(_))
    ));
    // Same name and id as a, but a garbage signature: rejected even with
    // a's valid line after it.
    let sig_a = note_a.rsplit_once("\n\n").unwrap().1;
    let blob = B64
        .decode(sig_a.trim_end().rsplit_once(' ').unwrap().1)
        .unwrap();
    let mut forged = blob.clone();
    forged[10] ^= 1;
    let forged_line = format!("\u{2014} log-a {}\n", B64.encode(&forged));
    let text = note_a.rsplit_once("\n\n").unwrap().0;
    let n = format!("{text}\n\n{forged_line}{sig_a}");
    assert!(matches!(
        open_checkpoint(&n, &a.verifier_key()),
        Err(NoteError::BadSignature(_))
    ));
}

#[test]
fn every_tampering_fails() {
    let signer = Ed25519Signer::generate("rampart.example/audit").unwrap();
    let vkey = signer.verifier_key();
    let note = sign_checkpoint(&checkpoint(42), &signer).unwrap();
    assert!(open_checkpoint(&note, &vkey).is_ok());
    // Flip every bit of every byte: nothing else verifies to a
    // different checkpoint.
    let bytes = note.as_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut t = bytes.to_vec();
            t[i] ^= 1 << bit;
            let Ok(s) = String::from_utf8(t) else {
                continue;
            };
            if let Ok(cp) = open_checkpoint(&s, &vkey) {
                panic!("tampered note at byte {i} bit {bit} verified: {cp:?}");
            }
        }
    }
    // Truncations.
    for len in 0..note.len() {
        if let Some(s) = note.get(..len) {
            assert!(open_checkpoint(s, &vkey).is_err(), "prefix {len}");
        }
    }
    // Structural manglings.
    let (text, sigs) = note.rsplit_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let cases = [
        format!("{text}{sigs}"),                                  // no blank line
        format!("{text}\n{}", sigs.trim_end()),                   // no final newline
        format!("{text}\n{sigs}\n"),                              // empty signature line
        format!("{text}\n{}", sigs.replace('\u{2014}', "-")),     // ascii dash
        format!("{text}\n{}", sigs.replacen(' ', "  ", 1)),       // double space
        format!("{}\n{sigs}", text.replace("\n42\n", "\n042\n")), // non-canonical size
        format!("{}\n{sigs}", text.replace("\n42\n", "\n+42\n")),
        format!("{text}\n{sigs}{}", "x".repeat(MAX_NOTE_BYTES)), // too long
        format!("{}\n{sigs}", text.replace("audit\n", "audit\r\n")), // control char
        format!("\n{text}\n{sigs}"),                             // leading blank line
    ];
    for (i, c) in cases.iter().enumerate() {
        assert!(open_checkpoint(c, &vkey).is_err(), "case {i}: {c:?}");
    }
    // Too long is its own error.
    assert_eq!(open_checkpoint(&cases[7], &vkey), Err(NoteError::TooLong));
}

#[test]
fn checkpoint_body_grammar() {
    let ok = "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
    assert_eq!(Checkpoint::parse_body(ok).unwrap().size, 0);
    let ext = "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n";
    assert!(Checkpoint::parse_body(ext).is_ok());
    for bad in [
        "",
        "o\n",
        "o\n0\n",
        "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n",
        "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF=\n",
        "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n",
        "o\n1 \n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
    ] {
        assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
    }
}

#[derive(Debug)]
struct WrongKeySigner(Ed25519Signer, [u8; 32]);
impl CheckpointSigner for WrongKeySigner {
    fn key_name(&self) -> &str {
        self.0.key_name()
    }
    fn public_key(&self) -> [u8; 32] {
        self.1
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        self.0.sign(msg)
    }
}

#[test]
fn a_signer_with_the_wrong_public_key_is_caught() {
    let s = Ed25519Signer::generate("log").unwrap();
    let other = Ed25519Signer::generate("log").unwrap().public_key();
    let w = WrongKeySigner(s, other);
    assert!(matches!(
        sign_checkpoint(&checkpoint(1), &w),
        Err(NoteError::Signer(_))
    ));
}
