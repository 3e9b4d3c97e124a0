//! Arbitrary bytes (as UTF-8 text) through the C2SP signed-note and
//! tlog-checkpoint parsers of `rampart_audit::note`: verifier-key
//! parsing, unverified checkpoint parsing and signature-checked opening
//! against a fixed key. None may panic, and:
//!
//! - a parsed verifier key prints to text that parses back to it;
//! - a note that opens under the key also parses unverified, to the same
//!   checkpoint, and the same checkpoint under `open_checkpoint_any`;
//! - a checkpoint built from the input (origin = first line, size and
//!   root from the bytes) signs and opens back to itself (round trip),
//!   unless its origin is invalid or the note is too long;
//! - that signed note with one byte altered (position and mask from the
//!   input) never opens to a different checkpoint.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_audit::merkle::leaf_hash;
use rampart_audit::note::{
    open_checkpoint, open_checkpoint_any, open_note, parse_checkpoint_unverified, sign_checkpoint,
    sign_note, Checkpoint, CheckpointSigner as _, Ed25519Signer, NoteError, VerifierKey,
    MAX_NOTE_BYTES,
};

const SEED: [u8; 32] = [0x42; 32];
const OTHER_SEED: [u8; 32] = [0x17; 32];

fn signer() -> &'static Ed25519Signer {
    static S: OnceLock<Ed25519Signer> = OnceLock::new();
    S.get_or_init(|| Ed25519Signer::from_seed("fuzz.example/log", &SEED).expect("fixed signer"))
}

fn other_key() -> &'static VerifierKey {
    static K: OnceLock<VerifierKey> = OnceLock::new();
    K.get_or_init(|| {
        Ed25519Signer::from_seed("fuzz.example/other", &OTHER_SEED)
            .expect("fixed signer")
            .verifier_key()
    })
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    for (o, i) in a.iter_mut().zip(b) {
        *o = *i;
    }
    u64::from_be_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let signer = signer();
    let key = signer.verifier_key();

    // Verifier keys.
    if let Ok(k) = VerifierKey::parse(text) {
        let printed = k.to_string();
        assert_eq!(VerifierKey::parse(&printed).as_ref(), Ok(&k), "{printed}");
        assert_eq!(printed.parse::<VerifierKey>().as_ref(), Ok(&k));
    }

    // Notes and checkpoints, unverified and verified.
    let unverified = parse_checkpoint_unverified(text);
    let opened = open_checkpoint(text, &key);
    if let Ok(cp) = &opened {
        assert_eq!(unverified.as_ref(), Ok(cp));
        let keys = [other_key().clone(), key.clone()];
        assert_eq!(open_checkpoint_any(text, &keys).as_ref(), Ok(cp));
    }
    if let Ok((body, k)) = open_note(text, std::slice::from_ref(&key)) {
        assert_eq!(k, &key);
        assert!(text.starts_with(body));
    }
    let _ = open_note(text, &[]);
    let _ = open_checkpoint(text, other_key());

    // Arbitrary note text signs and opens back to itself.
    if let Ok(signed) = sign_note(text, signer) {
        let (body, _) = open_note(&signed, std::slice::from_ref(&key)).expect("own note opens");
        assert_eq!(body, text);
    }

    // Round trip: a checkpoint made from the input signs and opens.
    let origin = text.split('\n').next().unwrap_or_default().to_owned();
    let size = be_u64(data.get(data.len().saturating_sub(8)..).unwrap_or_default());
    let root = match data.get(..32) {
        Some(r) => r.try_into().expect("32 bytes"),
        None => leaf_hash(data),
    };
    let cp = Checkpoint { origin, size, root };
    let note = match sign_checkpoint(&cp, signer) {
        Ok(note) => note,
        Err(NoteError::MalformedCheckpoint(_)) => {
            assert!(cp.body().is_err(), "valid checkpoint {cp:?} refused");
            return;
        }
        Err(NoteError::TooLong) => {
            // body, blank line, "— <name> <base64 of 68 bytes>\n"
            let len = cp.body().expect("body").len() + 1 + 4 + signer.key_name().len() + 1 + 92 + 1;
            assert!(
                len > MAX_NOTE_BYTES,
                "a note of {len} bytes refused as too long"
            );
            return;
        }
        Err(e) => panic!("signing {cp:?}: {e}"),
    };
    assert_eq!(open_checkpoint(&note, &key).as_ref(), Ok(&cp), "{note:?}");
    assert_eq!(parse_checkpoint_unverified(&note).as_ref(), Ok(&cp));
    assert_eq!(
        Checkpoint::parse_body(&cp.body().expect("body")).as_ref(),
        Ok(&cp)
    );
    assert!(matches!(
        open_checkpoint(&note, other_key()),
        Err(NoteError::Unverified(_))
    ));

    // The same note with one byte altered never opens to another
    // checkpoint.
    let mut bytes = note.into_bytes();
    let pos = data.len().wrapping_mul(31) % bytes.len();
    let mask = data.first().copied().unwrap_or(1) | 1;
    if let Some(b) = bytes.get_mut(pos) {
        *b ^= mask;
    }
    if let Ok(tampered) = std::str::from_utf8(&bytes) {
        if let Ok(back) = open_checkpoint(tampered, &key) {
            assert_eq!(back, cp, "altered note {tampered:?} opened");
        }
    }
});
