//! TOTP / HOTP against the RFC vectors in `shared/vectors/rfc/`, the skew
//! window and replay rules on a fake clock, base32, the enrolment URI, the
//! QR renderings and recovery codes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::PathBuf;

use proptest::prelude::*;
use rampart_auth::totp::{
    self, base32_decode, base32_encode, code_at, hotp, otpauth_uri, qr_png, qr_terminal, recovery,
    step_of, verify, EnrolError, TotpAlgorithm, TotpError, TotpParams, QR_PNG_SCALE, QR_QUIET_ZONE,
};
use serde_json::Value;

fn vectors(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/rfc")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test vectors missing: cannot read {} ({e}); they live in the shared directory next to the workspace",
            path.display()
        )
    });
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    json["vectors"].as_array().expect("vectors array").clone()
}

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SECRET: &[u8] = b"12345678901234567890";

fn params() -> TotpParams {
    TotpParams::default()
}

// --- RFC vectors -------------------------------------------------------

#[test]
fn rfc6238_vectors() {
    let vectors = vectors("rfc6238_totp.json");
    assert_eq!(vectors.len(), 18, "RFC 6238 appendix B has 18 vectors");
    for v in &vectors {
        let algorithm = TotpAlgorithm::parse(v["mode"].as_str().unwrap()).expect("known mode");
        let secret = hex(v["secret_hex"].as_str().unwrap());
        assert_eq!(secret, v["secret_ascii"].as_str().unwrap().as_bytes());
        // The vectors' base32 form decodes to the same key (padded form).
        let decoded = base32_decode(v["secret_base32"].as_str().unwrap()).expect("base32");
        assert_eq!(decoded.as_slice(), secret.as_slice());
        assert_eq!(v["t0"].as_u64(), Some(0), "T0 is always 0 here");
        let params = TotpParams {
            algorithm,
            digits: u32::try_from(v["digits"].as_u64().unwrap()).unwrap(),
            period_secs: v["step"].as_u64().unwrap(),
            skew_steps: 0,
        };
        let time = v["time"].as_u64().unwrap();
        let expected = v["totp"].as_str().unwrap();
        assert_eq!(
            code_at(&secret, &params, time),
            expected,
            "{} at {time}",
            algorithm
        );
        // And verify accepts it with no skew at all, returning T.
        assert_eq!(
            verify(&secret, &params, expected, time, None),
            Ok(time / 30),
            "{} at {time}",
            algorithm
        );
    }
}

#[test]
fn rfc4226_vectors() {
    let vectors = vectors("rfc4226_hotp.json");
    assert_eq!(vectors.len(), 10, "RFC 4226 appendix D has 10 vectors");
    for v in &vectors {
        let counter = v["counter"].as_u64().unwrap();
        let secret = v["secret_ascii"].as_str().unwrap().as_bytes();
        assert_eq!(
            hotp(secret, TotpAlgorithm::Sha1, 6, counter),
            v["hotp_6"].as_str().unwrap(),
            "counter {counter}"
        );
        // The 10-digit value is the whole 31-bit truncated word.
        let truncated = u64::from_str_radix(v["truncated_hex"].as_str().unwrap(), 16).unwrap();
        assert_eq!(
            hotp(secret, TotpAlgorithm::Sha1, 10, counter),
            format!("{truncated:010}"),
            "counter {counter}"
        );
        // TOTP is HOTP at T: a 30 s step whose T equals the counter.
        assert_eq!(
            code_at(secret, &params(), counter * 30 + 29),
            v["hotp_6"].as_str().unwrap()
        );
    }
}

#[test]
fn codes_are_zero_padded() {
    // RFC 6238 vector: SHA1 at 1111111109 is 07081804 (leading zero).
    let params = TotpParams {
        digits: 8,
        ..params()
    };
    assert_eq!(code_at(SECRET, &params, 1_111_111_109), "07081804");
    assert_eq!(
        verify(SECRET, &params, "07081804", 1_111_111_109, None),
        Ok(1_111_111_109 / 30)
    );
    assert_eq!(
        verify(SECRET, &params, "7081804", 1_111_111_109, None),
        Err(TotpError::Malformed)
    );
}

// --- the window on a fake clock ---------------------------------------

#[test]
fn skew_window_edges() {
    let p = params();
    let t: u64 = 1_000_000; // step index
    let code = hotp(SECRET, p.algorithm, p.digits, t);
    for accepted in [t - 1, t, t + 1] {
        // First and last second of each neighbouring step.
        for now in [accepted * 30, accepted * 30 + 29] {
            assert_eq!(
                verify(SECRET, &p, &code, now, None),
                Ok(t),
                "step {t}'s code at {now}"
            );
        }
    }
    // One second outside the window on either side, and two steps away.
    for now in [
        (t - 1) * 30 - 1,
        (t + 2) * 30,
        (t - 2) * 30,
        (t + 2) * 30 + 29,
    ] {
        assert_eq!(
            verify(SECRET, &p, &code, now, None),
            Err(TotpError::Invalid),
            "step {t}'s code at {now}"
        );
    }
}

#[test]
fn zero_skew_is_exact_to_the_period_boundary() {
    let p = TotpParams {
        skew_steps: 0,
        ..params()
    };
    let t: u64 = 55_555_555;
    let code = hotp(SECRET, p.algorithm, p.digits, t);
    assert_eq!(verify(SECRET, &p, &code, t * 30, None), Ok(t));
    assert_eq!(verify(SECRET, &p, &code, t * 30 + 29, None), Ok(t));
    assert_eq!(
        verify(SECRET, &p, &code, t * 30 - 1, None),
        Err(TotpError::Invalid)
    );
    assert_eq!(
        verify(SECRET, &p, &code, t * 30 + 30, None),
        Err(TotpError::Invalid)
    );
}

#[test]
fn wider_skew_and_other_periods() {
    let p = TotpParams {
        algorithm: TotpAlgorithm::Sha256,
        digits: 8,
        period_secs: 60,
        skew_steps: 2,
    };
    let secret = totp::generate_secret(TotpAlgorithm::Sha256).unwrap();
    let t = 20_000_000u64;
    let code = hotp(&secret, p.algorithm, p.digits, t);
    for now_step in t - 2..=t + 2 {
        assert_eq!(verify(&secret, &p, &code, now_step * 60 + 13, None), Ok(t));
    }
    assert_eq!(
        verify(&secret, &p, &code, (t + 3) * 60, None),
        Err(TotpError::Invalid)
    );
    assert_eq!(
        verify(&secret, &p, &code, (t - 2) * 60 - 1, None),
        Err(TotpError::Invalid)
    );
    assert_eq!(step_of(&p, t * 60 + 59), t);
}

#[test]
fn no_overflow_at_the_ends_of_time() {
    let p = params();
    // Near 0: step 0 minus skew must clip, not wrap.
    let code0 = code_at(SECRET, &p, 0);
    assert_eq!(verify(SECRET, &p, &code0, 0, None), Ok(0));
    assert_eq!(verify(SECRET, &p, &code0, 29, None), Ok(0));
    assert_eq!(verify(SECRET, &p, &code0, 30, None), Ok(0));
    let code1 = code_at(SECRET, &p, 30);
    assert_eq!(verify(SECRET, &p, &code1, 0, None), Ok(1));
    // Near u64::MAX: step + skew must clip, not wrap.
    let last = u64::MAX / 30;
    let code_last = code_at(SECRET, &p, u64::MAX);
    assert_eq!(verify(SECRET, &p, &code_last, u64::MAX, None), Ok(last));
    assert_eq!(
        verify(SECRET, &p, &code_last, u64::MAX, Some(last)),
        Err(TotpError::Reused)
    );
    assert_eq!(
        verify(SECRET, &p, &code_last, u64::MAX, Some(u64::MAX)),
        Err(TotpError::Reused)
    );
    let one_sec = TotpParams {
        period_secs: 1,
        ..p
    };
    let code_max = code_at(SECRET, &one_sec, u64::MAX);
    assert_eq!(
        verify(SECRET, &one_sec, &code_max, u64::MAX - 1, None),
        Ok(u64::MAX)
    );
}

// --- replay ------------------------------------------------------------

#[test]
fn a_code_is_accepted_once() {
    let p = params();
    let now = 1_700_000_000u64;
    let code = code_at(SECRET, &p, now);
    let step = verify(SECRET, &p, &code, now, None).unwrap();
    assert_eq!(step, step_of(&p, now));
    // Same code again, same or later time: refused.
    assert_eq!(
        verify(SECRET, &p, &code, now, Some(step)),
        Err(TotpError::Reused)
    );
    assert_eq!(
        verify(SECRET, &p, &code, now + 30, Some(step)),
        Err(TotpError::Reused)
    );
    // An older step's code (still in the window) is refused too.
    let older = code_at(SECRET, &p, now - 30);
    if older != code {
        assert_eq!(
            verify(SECRET, &p, &older, now, Some(step)),
            Err(TotpError::Reused)
        );
    }
    // The next step's code is fresh.
    let next = code_at(SECRET, &p, now + 30);
    assert_eq!(
        verify(SECRET, &p, &next, now + 30, Some(step)),
        Ok(step + 1)
    );
    // A code accepted early (clock ahead) blocks the current step's code.
    assert_eq!(
        verify(SECRET, &p, &code, now, Some(step + 1)),
        Err(TotpError::Reused)
    );
}

#[test]
fn wrong_code_is_invalid_not_reused() {
    let p = params();
    let now = 1_700_000_000u64;
    let code = code_at(SECRET, &p, now);
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let window: Vec<String> = (0..3)
        .map(|i| code_at(SECRET, &p, now - 30 + i * 30))
        .collect();
    assert!(!window.contains(&wrong), "pick another time for this test");
    assert_eq!(
        verify(SECRET, &p, &wrong, now, None),
        Err(TotpError::Invalid)
    );
    assert_eq!(
        verify(SECRET, &p, &wrong, now, Some(step_of(&p, now))),
        Err(TotpError::Invalid)
    );
    // A different secret's code is invalid.
    let other = code_at(b"09876543210987654321", &p, now);
    if !window.contains(&other) {
        assert_eq!(
            verify(SECRET, &p, &other, now, None),
            Err(TotpError::Invalid)
        );
    }
}

// --- malformed input and bad parameters -------------------------------

#[test]
fn malformed_codes() {
    let p = params();
    let now = 1_700_000_000u64;
    for code in [
        "",
        "12345",
        "1234567",
        "12345a",
        "abcdef",
        "12 345",
        " 123456",
        "123456 ",
        "+12345",
        "-12345",
        "１２３４５６",
        "١٢٣٤٥٦",
        "12345\u{0}",
        "123456\n",
        "0x1234",
    ] {
        assert_eq!(
            verify(SECRET, &p, code, now, None),
            Err(TotpError::Malformed),
            "{code:?}"
        );
    }
    // A correct code with extra characters is malformed, not accepted.
    let code = code_at(SECRET, &p, now);
    assert_eq!(
        verify(SECRET, &p, &format!("{code}0"), now, None),
        Err(TotpError::Malformed)
    );
}

#[test]
fn bad_parameters_are_refused() {
    let now = 1_700_000_000u64;
    for bad in [
        TotpParams {
            digits: 5,
            ..params()
        },
        TotpParams {
            digits: 11,
            ..params()
        },
        TotpParams {
            period_secs: 0,
            ..params()
        },
        TotpParams {
            period_secs: 3601,
            ..params()
        },
        TotpParams {
            skew_steps: 11,
            ..params()
        },
        TotpParams {
            skew_steps: u64::MAX,
            ..params()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        let code = "0".repeat(bad.digits.min(12) as usize);
        assert!(
            matches!(
                verify(SECRET, &bad, &code, now, None),
                Err(TotpError::BadParams(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(params().validate(), Ok(()));
    // Short secrets are refused even with a right code.
    let short = b"0123456789";
    let code = code_at(short, &params(), now);
    assert!(matches!(
        verify(short, &params(), &code, now, None),
        Err(TotpError::BadParams(_))
    ));
}

#[test]
fn errors_show_neither_code_nor_secret() {
    let now = 1_700_000_000u64;
    let code = code_at(SECRET, &params(), now);
    for err in [
        verify(SECRET, &params(), "12345x", now, None).unwrap_err(),
        verify(SECRET, &params(), "000000", now + 3000, None).unwrap_err(),
        verify(SECRET, &params(), &code, now, Some(u64::MAX)).unwrap_err(),
    ] {
        for text in [format!("{err}"), format!("{err:?}")] {
            assert!(!text.contains(&code), "{text}");
            assert!(!text.contains("1234567890"), "{text}");
            assert!(!text.contains("12345x"), "{text}");
        }
    }
}

#[test]
fn defaults() {
    let p = TotpParams::default();
    assert_eq!(p.algorithm, TotpAlgorithm::Sha1);
    assert_eq!((p.digits, p.period_secs, p.skew_steps), (6, 30, 1));
    assert_eq!(TotpAlgorithm::Sha512.as_str(), "SHA512");
    assert_eq!(TotpAlgorithm::parse("SHA256"), Some(TotpAlgorithm::Sha256));
    assert_eq!(TotpAlgorithm::parse("SHA-256"), None);
}

#[test]
fn generated_secrets_have_the_hmac_length_and_differ() {
    for (alg, len) in [
        (TotpAlgorithm::Sha1, 20),
        (TotpAlgorithm::Sha256, 32),
        (TotpAlgorithm::Sha512, 64),
    ] {
        let a = totp::generate_secret(alg).unwrap();
        let b = totp::generate_secret(alg).unwrap();
        assert_eq!(a.len(), len);
        assert_ne!(a.as_slice(), b.as_slice());
        let now = 1_700_000_000u64;
        let p = TotpParams {
            algorithm: alg,
            ..params()
        };
        assert!(verify(&a, &p, &code_at(&a, &p, now), now, None).is_ok());
    }
}

// --- base32 ------------------------------------------------------------

#[test]
fn rfc4648_base32_vectors() {
    for (plain, padded) in [
        ("", ""),
        ("f", "MY======"),
        ("fo", "MZXQ===="),
        ("foo", "MZXW6==="),
        ("foob", "MZXW6YQ="),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI======"),
    ] {
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(base32_encode(plain.as_bytes()), unpadded);
        assert_eq!(base32_decode(padded).unwrap().as_slice(), plain.as_bytes());
        assert_eq!(
            base32_decode(unpadded).unwrap().as_slice(),
            plain.as_bytes()
        );
        let lower = unpadded.to_ascii_lowercase();
        assert_eq!(base32_decode(&lower).unwrap().as_slice(), plain.as_bytes());
    }
}

#[test]
fn base32_decode_is_forgiving_only_where_promised() {
    let spaced = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq";
    assert_eq!(base32_decode(spaced).unwrap().as_slice(), SECRET);
    assert_eq!(base32_decode("MZXW 6YQ=").unwrap().as_slice(), b"foob");
    for bad in [
        "MZXW6YQ1", // '1' is not base32
        "MZXW-6YQ", // dashes are not stripped
        "MZXW6YQ=A",
        "MZX",       // 3 symbols: no encoder makes this
        "MZXW6Y",    // 6 symbols: likewise
        "MZXW6YR",   // unused trailing bits set
        "MY=====",   // too little padding
        "MZXW6YQ==", // too much padding
        "é",
        "MZXW\tW6YQ", // tabs are not spaces
    ] {
        assert!(base32_decode(bad).is_none(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn base32_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let encoded = base32_encode(&bytes);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        prop_assert_eq!(encoded.len(), (bytes.len() * 8).div_ceil(5));
        prop_assert_eq!(base32_decode(&encoded).unwrap().to_vec(), bytes.clone());
        prop_assert_eq!(base32_decode(&encoded.to_ascii_lowercase()).unwrap().to_vec(), bytes.clone());
        let pad = (8 - encoded.len() % 8) % 8;
        let padded = format!("{encoded}{}", "=".repeat(pad));
        prop_assert_eq!(base32_decode(&padded).unwrap().to_vec(), bytes);
    }

    #[test]
    fn base32_decode_never_panics(s in prop_oneof!["\\PC{0,64}", "[A-Za-z0-9 =]{0,40}"]) {
        if let Some(bytes) = base32_decode(&s) {
            // Anything accepted decodes to what re-encodes to it (modulo
            // case, spaces and padding).
            let canonical: String = s
                .chars()
                .filter(|c| *c != ' ' && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect();
            prop_assert_eq!(base32_encode(&bytes), canonical);
        }
    }

    #[test]
    fn verify_never_panics(code in "\\PC{0,12}", now in any::<u64>(), last in any::<Option<u64>>()) {
        let _ = verify(SECRET, &params(), &code, now, last);
    }

    #[test]
    fn own_code_verifies_at_any_time(now in any::<u64>()) {
        let p = params();
        let code = code_at(SECRET, &p, now);
        prop_assert_eq!(code.len(), 6);
        let step = verify(SECRET, &p, &code, now, None).unwrap();
        // The matched step is within the window (a coincidental match of a
        // neighbouring step is a later step, never an earlier one).
        prop_assert!(step >= step_of(&p, now) && step <= step_of(&p, now).saturating_add(1));
        prop_assert_eq!(verify(SECRET, &p, &code, now, Some(step)), Err(TotpError::Reused));
    }
}

// --- enrolment URI -----------------------------------------------------

#[test]
fn otpauth_uri_default_params() {
    let uri = otpauth_uri("Rampart", "alice", SECRET, &params());
    assert_eq!(
        uri.as_str(),
        "otpauth://totp/Rampart:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Rampart&algorithm=SHA1&digits=6&period=30"
    );
}

#[test]
fn otpauth_uri_escapes_issuer_and_account() {
    let p = TotpParams {
        algorithm: TotpAlgorithm::Sha512,
        digits: 8,
        period_secs: 60,
        skew_steps: 1,
    };
    let uri = otpauth_uri("ACME Co: Prod", "alice@example.com:desk 1", SECRET, &p);
    assert_eq!(
        uri.as_str(),
        "otpauth://totp/ACME%20Co%3A%20Prod:alice%40example.com%3Adesk%201\
         ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Co%3A%20Prod\
         &algorithm=SHA512&digits=8&period=60"
    );
    // Exactly one literal ':' in the label, and no raw space, '@', '&',
    // '#', '?' after the scheme's.
    let label = uri
        .strip_prefix("otpauth://totp/")
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    assert_eq!(label.matches(':').count(), 1);
    assert!(!uri.contains(' ') && !uri.contains('@'));

    let tricky = otpauth_uri("a&b=c#d?e/f+g%", "ü ñ", SECRET, &params());
    assert!(
        tricky.starts_with("otpauth://totp/a%26b%3Dc%23d%3Fe%2Ff%2Bg%25:%C3%BC%20%C3%B1?secret=")
    );
    assert!(tricky.contains("&issuer=a%26b%3Dc%23d%3Fe%2Ff%2Bg%25&"));
    assert_eq!(tricky.matches('?').count(), 1);
    assert_eq!(tricky.matches('#').count(), 0);
}

#[test]
fn otpauth_uri_without_issuer() {
    let uri = otpauth_uri("", "bob", SECRET, &params());
    assert_eq!(
        uri.as_str(),
        "otpauth://totp/bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA1&digits=6&period=30"
    );
}

// --- QR codes ----------------------------------------------------------

const URI: &str = "otpauth://totp/Rampart:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Rampart&algorithm=SHA1&digits=6&period=30";

fn decode_png(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

fn png_pixel_is_dark(info: &png::OutputInfo, buf: &[u8], x: usize, y: usize) -> bool {
    let byte = buf[y * info.line_size + x / 8];
    byte & (0x80 >> (x % 8)) == 0
}

#[test]
fn qr_png_is_a_real_png_of_the_right_size() {
    let bytes = qr_png(URI).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (info, buf) = decode_png(&bytes);
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::One);
    assert_eq!(info.width, info.height);
    let px = info.width as usize;
    assert_eq!(px % QR_PNG_SCALE, 0);
    let side = px / QR_PNG_SCALE;
    let modules = side - 2 * QR_QUIET_ZONE;
    // A QR code is 17 + 4 * version modules wide.
    assert!(modules >= 21, "{modules} modules");
    assert_eq!((modules - 17) % 4, 0, "{modules} modules");

    // The same module count as the terminal rendering.
    let art = qr_terminal(URI).unwrap();
    assert_eq!(art.lines().next().unwrap().chars().count(), side);

    // The quiet zone is white all round.
    let quiet = QR_QUIET_ZONE * QR_PNG_SCALE;
    for y in 0..px {
        for x in 0..px {
            if x < quiet || y < quiet || x >= px - quiet || y >= px - quiet {
                assert!(!png_pixel_is_dark(&info, &buf, x, y), "({x}, {y})");
            }
        }
    }
    // The top-left finder pattern: a 7x7 dark ring, a light ring, a 3x3
    // dark core; each module a uniform 8x8 block.
    let module_dark = |mx: usize, my: usize| -> bool {
        let (x0, y0) = (
            (mx + QR_QUIET_ZONE) * QR_PNG_SCALE,
            (my + QR_QUIET_ZONE) * QR_PNG_SCALE,
        );
        let first = png_pixel_is_dark(&info, &buf, x0, y0);
        for dy in 0..QR_PNG_SCALE {
            for dx in 0..QR_PNG_SCALE {
                assert_eq!(png_pixel_is_dark(&info, &buf, x0 + dx, y0 + dy), first);
            }
        }
        first
    };
    for my in 0..7 {
        for mx in 0..7 {
            let ring = mx == 0 || my == 0 || mx == 6 || my == 6;
            let core = (2..=4).contains(&mx) && (2..=4).contains(&my);
            assert_eq!(
                module_dark(mx, my),
                ring || core,
                "finder module ({mx}, {my})"
            );
        }
    }
    // Separator column/row after the finder is light.
    for i in 0..8 {
        assert!(!module_dark(7, i) && !module_dark(i, 7));
    }
}

#[test]
fn qr_terminal_shape() {
    let art = qr_terminal(URI).unwrap();
    let lines: Vec<&str> = art.lines().collect();
    let side = lines[0].chars().count();
    assert!(art.ends_with('\n'));
    assert_eq!(lines.len(), side.div_ceil(2));
    for line in &lines {
        assert_eq!(line.chars().count(), side);
        assert!(line.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' ')));
    }
    // Quiet zone: the first two lines (4 module rows) are all light.
    assert!(lines[0].chars().all(|c| c == '█'));
    assert!(lines[1].chars().all(|c| c == '█'));
    // Left and right 4 columns are light on every full line.
    for line in &lines[..lines.len() - 1] {
        let chars: Vec<char> = line.chars().collect();
        assert!(chars[..QR_QUIET_ZONE].iter().all(|c| *c == '█'));
        assert!(chars[side - QR_QUIET_ZONE..].iter().all(|c| *c == '█'));
    }
    // The side is odd, so the last line is a light quiet-zone row over
    // the blank background.
    assert_eq!(side % 2, 1);
    assert!(lines[lines.len() - 1].chars().all(|c| c == '▀'));
    // Row 4-5 (line 2) starts the finder: 7 dark-topped modules after the
    // quiet zone (top row of the finder is dark, second row dark at its
    // edges only).
    let line2: Vec<char> = lines[2].chars().collect();
    assert_eq!(line2[QR_QUIET_ZONE], ' ');
    assert_eq!(line2[QR_QUIET_ZONE + 1], '▄');
}

#[test]
fn qr_refuses_oversized_data() {
    let huge = "x".repeat(5000);
    assert_eq!(qr_png(&huge), Err(EnrolError::QrTooLong));
    assert_eq!(qr_terminal(&huge), Err(EnrolError::QrTooLong));
}

// --- recovery codes ----------------------------------------------------

#[test]
fn recovery_codes_are_well_formed_and_distinct() {
    let codes = recovery::generate(10).unwrap();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 4, "{}", code.as_str());
        for g in groups {
            assert_eq!(g.len(), 4);
            assert!(g
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        }
        // 16 base32 symbols = 80 bits.
        let bits = base32_decode(&code.replace('-', "")).unwrap();
        assert_eq!(bits.len(), 10);
    }
    let mut unique: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    assert!(recovery::generate(0).unwrap().is_empty());
    // Two batches do not share codes.
    let more = recovery::generate(10).unwrap();
    assert!(more.iter().all(|c| !codes.contains(c)));
}

#[test]
fn recovery_hash_normalises() {
    assert_eq!(recovery::hash("ABCD-efgh"), recovery::hash("abcdefgh"));
    assert_eq!(recovery::hash(" abcd efgh "), recovery::hash("abcdefgh"));
    assert_ne!(recovery::hash("abcdefgh"), recovery::hash("abcdefgi"));
    // SHA-256("abcdefgh") in lower-case hex.
    assert_eq!(
        recovery::hash("ABCD-EFGH"),
        "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"
    );
}

#[test]
fn recovery_find() {
    let codes = recovery::generate(8).unwrap();
    let hashes: Vec<String> = codes.iter().map(|c| recovery::hash(c)).collect();
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(recovery::find(code, &hashes), Some(i));
        assert_eq!(recovery::find(&code.to_ascii_uppercase(), &hashes), Some(i));
        assert_eq!(recovery::find(&code.replace('-', " "), &hashes), Some(i));
    }
    let other = recovery::generate(1).unwrap();
    assert_eq!(recovery::find(&other[0], &hashes), None);
    assert_eq!(recovery::find("", &hashes), None);
    assert_eq!(recovery::find(" - ", &hashes), None);
    assert_eq!(recovery::find(&codes[0], &[]), None);
    // Once the caller removes a used hash, the code no longer works.
    let mut remaining = hashes.clone();
    remaining.remove(3);
    assert_eq!(recovery::find(&codes[3], &remaining), None);
    assert_eq!(recovery::find(&codes[4], &remaining), Some(3));
    // Malformed stored entries are skipped, not matched.
    let odd = vec![
        String::new(),
        "zz".into(),
        hashes[5].to_ascii_uppercase(),
        hashes[5].clone(),
    ];
    assert_eq!(recovery::find(&codes[5], &odd), Some(3));
}
