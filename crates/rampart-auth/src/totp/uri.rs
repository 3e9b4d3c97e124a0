//! The `otpauth://totp/…` key URI authenticator apps scan at enrolment.

use std::fmt::Write as _;

use zeroize::Zeroizing;

use super::{base32_encode, TotpParams};

/// The enrolment URI for `secret`, in the key URI format authenticator apps
/// read:
///
/// `otpauth://totp/Issuer:account?secret=…&issuer=Issuer&algorithm=SHA1&digits=6&period=30`
///
/// The issuer and account are percent-encoded (UTF-8, everything but RFC
/// 3986 unreserved characters, so a space is `%20`, `:` is `%3A` and `@`
/// is `%40`); the label's one literal `:` separates them. With an empty
/// issuer the label is the account alone and there is no `issuer`
/// parameter. The secret is base32 without padding. The URI holds the
/// secret, so it is zeroized on drop.
#[must_use]
pub fn otpauth_uri(
    issuer: &str,
    account: &str,
    secret: &[u8],
    params: &TotpParams,
) -> Zeroizing<String> {
    let secret_b32 = Zeroizing::new(base32_encode(secret));
    // Sized up front (3 bytes per escaped byte, the issuer twice) so the
    // buffer holding the secret is never reallocated and left behind.
    let capacity = issuer
        .len()
        .saturating_mul(6)
        .saturating_add(account.len().saturating_mul(3))
        .saturating_add(secret_b32.len())
        .saturating_add(96);
    let mut uri = Zeroizing::new(String::with_capacity(capacity));
    uri.push_str("otpauth://totp/");
    if !issuer.is_empty() {
        percent_encode_into(&mut uri, issuer);
        uri.push(':');
    }
    percent_encode_into(&mut uri, account);
    uri.push_str("?secret=");
    uri.push_str(&secret_b32);
    if !issuer.is_empty() {
        uri.push_str("&issuer=");
        percent_encode_into(&mut uri, issuer);
    }
    // Writing to a String cannot fail.
    let _ = write!(
        uri,
        "&algorithm={}&digits={}&period={}",
        params.algorithm.as_str(),
        params.digits,
        params.period_secs
    );
    uri
}

fn percent_encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            for nibble in [byte >> 4, byte & 0x0f] {
                if let Some(digit) = HEX.get(usize::from(nibble)) {
                    out.push(char::from(*digit));
                }
            }
        }
    }
}
