//! Wycheproof AES-GCM vectors through the same AEAD code path Rampart uses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::PathBuf;

use rampart_crypto::aead::{Aes256GcmKey, NONCE_LEN};

fn vectors_path() -> PathBuf {
    // The repository sits beside `shared/` (CI clones it there too).
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/wycheproof/aes_gcm_test.json")
}

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn wycheproof_aes_256_gcm() {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("wycheproof vectors missing at {}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["algorithm"], "AES-GCM");

    let (mut valid, mut invalid, mut groups) = (0usize, 0usize, 0usize);
    for group in doc["testGroups"].as_array().unwrap() {
        if group["keySize"] != 256 || group["ivSize"] != 96 || group["tagSize"] != 128 {
            continue;
        }
        groups += 1;
        for case in group["tests"].as_array().unwrap() {
            let id = &case["tcId"];
            let key = Aes256GcmKey::new(&hex(case["key"].as_str().unwrap())).unwrap();
            let iv: [u8; NONCE_LEN] = hex(case["iv"].as_str().unwrap()).try_into().unwrap();
            let aad = hex(case["aad"].as_str().unwrap());
            let msg = hex(case["msg"].as_str().unwrap());
            let mut ct = hex(case["ct"].as_str().unwrap());
            ct.extend(hex(case["tag"].as_str().unwrap()));
            let opened = key.open(&iv, &aad, &ct);
            match case["result"].as_str().unwrap() {
                "valid" | "acceptable" => {
                    let plain =
                        opened.unwrap_or_else(|e| panic!("tcId {id}: valid case failed: {e}"));
                    assert_eq!(
                        plain.as_slice(),
                        msg.as_slice(),
                        "tcId {id}: wrong plaintext"
                    );
                    let mut sealed = Vec::new();
                    key.seal_append(&iv, &aad, &msg, &mut sealed).unwrap();
                    assert_eq!(sealed, ct, "tcId {id}: seal differs from vector");
                    valid += 1;
                }
                "invalid" => {
                    assert!(opened.is_err(), "tcId {id}: invalid case decrypted");
                    invalid += 1;
                }
                other => panic!("tcId {id}: unknown result {other}"),
            }
        }
    }
    println!("wycheproof aes-256-gcm: {groups} groups, {valid} valid, {invalid} invalid");
    assert!(
        groups > 0 && valid > 0 && invalid > 0,
        "no 256-bit/96-bit/128-bit vectors found"
    );
}
