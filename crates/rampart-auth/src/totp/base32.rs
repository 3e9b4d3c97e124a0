//! RFC 4648 §6 base32, the encoding authenticator apps use for secrets.

use zeroize::Zeroizing;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// `bytes` in RFC 4648 base32: upper case, no `=` padding.
#[must_use]
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(8).div_ceil(5));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u16::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            push_symbol(&mut out, buffer >> bits);
        }
        // INVARIANT: fewer than 5 bits remain; drop the consumed ones so
        // the next shift cannot overflow 16 bits.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        push_symbol(&mut out, buffer << (5 - bits));
    }
    out
}

fn push_symbol(out: &mut String, index: u16) {
    if let Some(symbol) = ALPHABET.get(usize::from(index & 0x1f)) {
        out.push(char::from(*symbol));
    }
}

fn symbol_value(c: u8) -> Option<u16> {
    match c {
        b'A'..=b'Z' => Some(u16::from(c - b'A')),
        b'a'..=b'z' => Some(u16::from(c - b'a')),
        b'2'..=b'7' => Some(u16::from(c - b'2') + 26),
        _ => None,
    }
}

/// Decodes RFC 4648 base32, as a person might type it: either case,
/// ASCII spaces anywhere, `=` padding optional (but, if present, only at
/// the end and exactly as much as completes the last 8-symbol group).
///
/// Returns `None` for any other character, a length no encoder produces
/// (1, 3 or 6 symbols past a full group) or non-zero unused trailing bits
/// (RFC 4648 §3.5: each byte string has one encoding). The output is
/// zeroized on drop, as it is usually a secret.
#[must_use]
pub fn base32_decode(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(s.len().saturating_mul(5) / 8));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    let mut symbols: usize = 0;
    let mut padding: usize = 0;
    for c in s.bytes() {
        match c {
            b' ' => continue,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => {}
        }
        if padding > 0 {
            return None; // a symbol after padding
        }
        buffer = (buffer << 5) | symbol_value(c)?;
        bits += 5;
        symbols += 1;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
            buffer &= (1 << bits) - 1;
        }
    }
    let partial = symbols % 8;
    if !matches!(partial, 0 | 2 | 4 | 5 | 7) {
        return None;
    }
    // Padding, if any, completes a partial group exactly.
    if padding > 0 && (partial == 0 || partial + padding != 8) {
        return None;
    }
    if buffer != 0 {
        return None; // non-canonical: unused bits set
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rules() {
        assert!(base32_decode("MY======").is_some());
        assert!(base32_decode("MY=").is_none());
        assert!(base32_decode("MY=======").is_none());
        assert!(base32_decode("M=Y").is_none());
        assert!(base32_decode("========").is_none());
        assert!(base32_decode("MY==============").is_none());
        assert!(base32_decode("M").is_none());
        assert!(base32_decode("MZ").is_none()); // 'Z' leaves a bit set
        assert!(base32_decode("MY1").is_none());
    }
}
