//! RFC 9421 HTTP Message Signatures: verify and sign.
//!
//! # Verifying (gateway)
//!
//! 1. [`parse`] reads `Signature-Input` and `Signature` once, checks them
//!    against Rampart's requirements and returns a [`Parsed`] (`Ok(None)`
//!    when the request has no `Signature-Input`: not this scheme).
//! 2. [`Parsed::claims`] gives the key id, `created`, `expires` and `nonce`
//!    for key lookup, freshness and replay checks.
//! 3. [`Parsed::verify`] checks the signature with the key's material and,
//!    when `content-digest` is covered, the body against `Content-Digest`.
//!
//! The key's registered [`Scheme`] decides the algorithm. `alg` is
//! optional on the wire; when present it must name that same algorithm
//! ([`AuthError::AlgorithmMismatch`] otherwise). [`Claims::scheme`] is taken
//! from `alg` when present and is `Rfc9421HmacSha256` as a *placeholder*
//! when not: the gateway replaces it with the key's own scheme.
//!
//! # Rampart's requirements (CONTRACT.md)
//!
//! [`parse`] (and so [`claims`]) rejects with [`AuthError::Malformed`],
//! naming what is missing, a signature without `keyid`, `created` or
//! `nonce`, or whose covered components lack `"@method"`, `"@target-uri"`
//! (or all of `"@authority"`, `"@path"` and `"@query"` — `@query` is
//! required even for an empty query, whose value is `?`), or
//! `"content-digest"` when the body is not empty. [`parse_unchecked`] skips
//! these checks (for interop tests against the RFC's own examples) and
//! [`Parsed::verify_signature`] verifies without them; the gateway uses
//! [`parse`] and [`Parsed::verify`].
//!
//! # Strictness (documented choices)
//!
//! - Exactly one signature: `Signature-Input` and `Signature` must each
//!   hold exactly one member, with the same label. More is
//!   [`AuthError::Malformed`] (RFC 9421 allows several; Rampart has no use
//!   for them and one is easier to reason about).
//! - Headers: at most 8 KiB each (all lines combined), at most 16
//!   dictionary members, 64 covered components, 16 parameters; duplicate
//!   dictionary keys, parameters and covered components are rejected.
//! - Component identifiers carry no parameters: `;sf`, `;bs`, `;key`,
//!   `;req`, `;name` and any other are rejected, so `@query-param` is not
//!   supported either. Supported derived components: `@method`,
//!   `@target-uri`, `@authority`, `@scheme`, `@path`, `@query`,
//!   `@request-target`. Header fields are named in lowercase.
//! - Signature parameters: `created` and `expires` must be non-negative
//!   integers, `keyid` a string of 1 to 256 characters, `nonce` a string of
//!   1 to 128 visible ASCII characters, `alg` one of `hmac-sha256`,
//!   `ed25519`, `ecdsa-p256-sha256`; `tag` is accepted and ignored; any
//!   other parameter is rejected.
//! - `"@signature-params"` is the inner list and its parameters exactly as
//!   received (byte for byte), which is the RFC's serialization for every
//!   canonically serialized header.
//! - `@authority` (and the authority in `@target-uri`) is lowercased and
//!   loses a default port (`:443` for `https`, `:80` for `http`), as
//!   RFC 9421 §2.2.3 asks via RFC 9110 §4.2.3.
//! - Header field values: each line trimmed of spaces and tabs, lines joined
//!   with `, `; a covered header that is absent is
//!   [`AuthError::Malformed`] (``covered header `x` is absent``).
//! - ECDSA signatures are raw `r‖s` (64 bytes), RFC 9421 §3.3.4.
//! - Freshness (`created`, `expires`) and replay (`nonce`) are the
//!   gateway's to check, from [`Claims`].
//!
//! # Signing (client)
//!
//! [`sign`] covers `@method @authority @path @query`, `content-digest` when
//! the body is not empty (add the header first with
//! [`crate::digest::content_digest`]) and any extra headers (such as
//! `rampart-mfa`), with label `sig1` and parameters `created`, `nonce`,
//! `keyid`, `alg`.

pub(crate) mod sfv;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, ED25519,
};
use aws_lc_rs::{hmac, rand::SystemRandom};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use self::sfv::{BareItem, MemberValue, BASE64};
use crate::digest::{self, CONTENT_DIGEST};
use crate::{AuthError, Claims, KeyMaterial, RequestView, Scheme, TimeUnit};

/// The `Signature-Input` header name.
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// The `Signature` header name.
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");
/// The covered component that binds an MFA step-up proof to a request.
pub const MFA_COMPONENT: &str = "rampart-mfa";
/// The signature label [`sign`] uses.
pub const LABEL: &str = "sig1";
/// Longest accepted `nonce`.
pub const MAX_NONCE_LEN: usize = 128;
/// Longest accepted `keyid`.
pub const MAX_KEY_ID_LEN: usize = 256;
/// Most covered components.
pub const MAX_COMPONENTS: usize = sfv::MAX_INNER_LIST;
/// Longest header (all lines combined) the parsers look at.
pub const MAX_HEADER_LEN: usize = sfv::MAX_FIELD_LEN;

const MAX_COMPONENT_NAME_LEN: usize = 64;
const CONTENT_DIGEST_COMPONENT: &str = "content-digest";
const CREDENTIAL_HEADERS: [&str; 2] = ["signature-input", "signature"];

/// What a covered component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Method,
    TargetUri,
    Authority,
    Scheme,
    Path,
    Query,
    RequestTarget,
    Field,
}

fn malformed(detail: impl Into<String>) -> AuthError {
    AuthError::Malformed(detail.into())
}

/// Classifies a component name (without quotes), rejecting what Rampart
/// does not support.
fn classify(name: &str) -> Result<Kind, AuthError> {
    Ok(match name {
        "@method" => Kind::Method,
        "@target-uri" => Kind::TargetUri,
        "@authority" => Kind::Authority,
        "@scheme" => Kind::Scheme,
        "@path" => Kind::Path,
        "@query" => Kind::Query,
        "@request-target" => Kind::RequestTarget,
        _ => {
            if name.is_empty() {
                return Err(malformed("empty covered component name"));
            }
            if name.len() > MAX_COMPONENT_NAME_LEN {
                return Err(malformed("covered component name is too long"));
            }
            if name.starts_with('@') {
                return Err(malformed(format!("unsupported derived component `{name}`")));
            }
            if !name.bytes().all(sfv::is_tchar) {
                return Err(malformed("covered component is not a header field name"));
            }
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(malformed(format!(
                    "covered component `{name}` must be lowercase"
                )));
            }
            Kind::Field
        }
    })
}

fn rfc9421_scheme(alg: &str) -> Option<Scheme> {
    match alg {
        "hmac-sha256" => Some(Scheme::Rfc9421HmacSha256),
        "ed25519" => Some(Scheme::Rfc9421Ed25519),
        "ecdsa-p256-sha256" => Some(Scheme::Rfc9421EcdsaP256),
        _ => None,
    }
}

fn valid_nonce(nonce: &str) -> bool {
    (1..=MAX_NONCE_LEN).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_key_id(key_id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&key_id.len())
        && key_id.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The lines of header `name` combined (RFC 9110 §5.3), borrowed when
/// there is one line. `None` when absent.
fn combined<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    display: &str,
) -> Result<Option<Cow<'h, str>>, AuthError> {
    let mut lines = headers.get_all(name).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let not_ascii = || malformed(format!("{display} is not visible ASCII"));
    let too_long = || malformed(format!("{display} is longer than 8 KiB"));
    let first = first.to_str().map_err(|_| not_ascii())?;
    if first.len() > MAX_HEADER_LEN {
        return Err(too_long());
    }
    let Some(second) = lines.next() else {
        return Ok(Some(Cow::Borrowed(first)));
    };
    let mut all = String::with_capacity(first.len() * 2 + 2);
    all.push_str(first);
    for line in std::iter::once(second).chain(lines) {
        all.push_str(", ");
        all.push_str(line.to_str().map_err(|_| not_ascii())?);
        if all.len() > MAX_HEADER_LEN {
            return Err(too_long());
        }
    }
    Ok(Some(Cow::Owned(all)))
}

/// A request's RFC 9421 signature, parsed once: what it claims, what it
/// covers, and the signature bytes. Built by [`parse`] (Rampart's
/// requirements checked) or [`parse_unchecked`] (RFC syntax only).
pub struct Parsed {
    /// The inner list and its parameters, exactly as received.
    params: String,
    /// Each covered component: the span of its identifier (with quotes)
    /// in `params`, and what it is.
    components: Vec<(Range<usize>, Kind)>,
    key_id: String,
    created: Option<i64>,
    expires: Option<i64>,
    nonce: Option<String>,
    alg: Option<Scheme>,
    signature: Vec<u8>,
}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parsed")
            .field("key_id", &self.key_id)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("nonce", &self.nonce)
            .field("alg", &self.alg)
            .field("components", &self.components().collect::<Vec<_>>())
            .field("signature_len", &self.signature.len())
            .finish()
    }
}

/// Parses the request's signature and checks Rampart's requirements
/// (module docs). `Ok(None)` when there is no `Signature-Input` header.
///
/// # Errors
///
/// [`AuthError::Malformed`] naming the problem: a header does not parse,
/// more than one signature, the label is missing from `Signature`, a
/// required parameter or covered component is missing, an unsupported
/// component or parameter.
pub fn parse(req: &RequestView<'_>) -> Result<Option<Parsed>, AuthError> {
    let Some(parsed) = parse_unchecked(req)? else {
        return Ok(None);
    };
    parsed.check_requirements(req)?;
    Ok(Some(parsed))
}

/// The request's [`Claims`] (see [`parse`]); `Ok(None)` when there is no
/// `Signature-Input` header.
///
/// # Errors
///
/// As [`parse`].
pub fn claims(req: &RequestView<'_>) -> Result<Option<Claims>, AuthError> {
    Ok(parse(req)?.map(|p| p.claims()))
}

/// Parses the request's signature as RFC 9421 syntax only, *without*
/// Rampart's required parameters (`created`, `nonce`) and components. For
/// interop tests against other implementations' examples; authentication
/// uses [`parse`]. Still strict about everything else (module docs), and
/// `keyid` is always required.
///
/// # Errors
///
/// As [`parse`], less the requirement checks.
pub fn parse_unchecked(req: &RequestView<'_>) -> Result<Option<Parsed>, AuthError> {
    let Some(input) = combined(req.headers, &SIGNATURE_INPUT, "Signature-Input")? else {
        return Ok(None);
    };
    let members = sfv::parse_dictionary(&input)
        .map_err(|e| malformed(format!("Signature-Input: {}", e.0)))?;
    let member = match members.as_slice() {
        [m] => m,
        [] => return Err(malformed("Signature-Input is empty")),
        _ => {
            return Err(malformed(
                "Signature-Input has more than one signature; exactly one is accepted",
            ))
        }
    };
    let MemberValue::InnerList { items, params } = &member.value else {
        return Err(malformed("Signature-Input member is not an inner list"));
    };
    let offset = member.value_span.start;
    let raw = input
        .get(member.value_span.clone())
        .ok_or_else(|| malformed("Signature-Input: internal span error"))?;

    let mut components: Vec<(Range<usize>, Kind)> = Vec::with_capacity(items.len());
    for item in items {
        let BareItem::String(name) = &item.bare else {
            return Err(malformed("covered component is not a string"));
        };
        let kind = classify(name)?;
        if !item.params.is_empty() {
            return Err(malformed(format!(
                "component parameters are not supported (on `{name}`)"
            )));
        }
        let span = match (
            item.span.start.checked_sub(offset),
            item.span.end.checked_sub(offset),
        ) {
            (Some(start), Some(end)) if raw.get(start..end).is_some() => start..end,
            _ => return Err(malformed("Signature-Input: internal span error")),
        };
        // `name` is a header field name or a known derived name, so its
        // serialization is `"name"`: the raw span, with no escapes.
        if components
            .iter()
            .any(|(s, _)| unquoted(raw, s) == Some(&**name))
        {
            return Err(malformed(format!(
                "covered component `{name}` is duplicated"
            )));
        }
        components.push((span, kind));
    }

    let mut key_id = None;
    let mut created = None;
    let mut expires = None;
    let mut nonce = None;
    let mut alg = None;
    for (key, value) in params {
        match (*key, value) {
            ("created", BareItem::Integer(n)) if *n >= 0 => created = Some(*n),
            ("expires", BareItem::Integer(n)) if *n >= 0 => expires = Some(*n),
            ("keyid", BareItem::String(s)) => {
                if !valid_key_id(s) {
                    return Err(malformed(
                        "signature parameter `keyid` must be 1 to 256 characters",
                    ));
                }
                key_id = Some(s);
            }
            ("nonce", BareItem::String(s)) => {
                if !valid_nonce(s) {
                    return Err(malformed(
                        "signature parameter `nonce` must be 1 to 128 visible ASCII characters",
                    ));
                }
                nonce = Some(s);
            }
            ("alg", BareItem::String(s)) => {
                alg = Some(rfc9421_scheme(s).ok_or_else(|| {
                    malformed("signature parameter `alg` is not hmac-sha256, ed25519 or ecdsa-p256-sha256")
                })?);
            }
            ("tag", BareItem::String(_)) => {}
            ("created" | "expires", _) => {
                return Err(malformed(format!(
                    "signature parameter `{key}` must be a non-negative integer"
                )))
            }
            ("keyid" | "nonce" | "alg" | "tag", _) => {
                return Err(malformed(format!(
                    "signature parameter `{key}` must be a string"
                )))
            }
            _ => {
                return Err(malformed(format!(
                    "unsupported signature parameter `{key}`"
                )))
            }
        }
    }
    let key_id = key_id.ok_or_else(|| malformed("missing signature parameter `keyid`"))?;

    let signature = parse_signature(req.headers, member.key)?;

    Ok(Some(Parsed {
        params: raw.to_owned(),
        components,
        key_id: key_id.clone().into_owned(),
        created,
        expires,
        nonce: nonce.map(|n| n.clone().into_owned()),
        alg,
        signature,
    }))
}

/// The component name at `span` (an identifier with its quotes) in `params`.
fn unquoted<'p>(params: &'p str, span: &Range<usize>) -> Option<&'p str> {
    params.get(span.start.checked_add(1)?..span.end.checked_sub(1)?)
}

/// The `Signature` header's single entry, which must be `label`.
fn parse_signature(headers: &HeaderMap, label: &str) -> Result<Vec<u8>, AuthError> {
    let value = combined(headers, &SIGNATURE, "Signature")?
        .ok_or_else(|| malformed("missing Signature header"))?;
    let members =
        sfv::parse_dictionary(&value).map_err(|e| malformed(format!("Signature: {}", e.0)))?;
    let member = match members.as_slice() {
        [m] => m,
        [] => return Err(malformed("Signature is empty")),
        _ => {
            return Err(malformed(
                "Signature has more than one signature; exactly one is accepted",
            ))
        }
    };
    if member.key != label {
        return Err(malformed(format!(
            "Signature has no entry for label `{label}`"
        )));
    }
    let MemberValue::Item(item) = &member.value else {
        return Err(malformed("Signature entry is not a byte sequence"));
    };
    let BareItem::ByteSeq(b64) = item.bare else {
        return Err(malformed("Signature entry is not a byte sequence"));
    };
    if !item.params.is_empty() {
        return Err(malformed("Signature entry has parameters"));
    }
    let signature = BASE64
        .decode(b64)
        .map_err(|_| malformed("Signature entry is not valid base64"))?;
    if signature.is_empty() {
        return Err(malformed("Signature entry is empty"));
    }
    Ok(signature)
}

impl Parsed {
    /// What the request claims. `scheme` comes from `alg` when present,
    /// else it is `Rfc9421HmacSha256` as a placeholder: the key's
    /// registered scheme decides (module docs).
    #[must_use]
    pub fn claims(&self) -> Claims {
        Claims {
            scheme: self.alg.unwrap_or(Scheme::Rfc9421HmacSha256),
            key_id: self.key_id.clone(),
            created: self.created,
            created_unit: TimeUnit::Seconds,
            window_ms: None,
            expires: self.expires,
            nonce: self.nonce.clone(),
            counter_nonce: None,
            credential_headers: CREDENTIAL_HEADERS.to_vec(),
            covers_mfa: self.covers(MFA_COMPONENT),
        }
    }

    /// The `keyid` parameter.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The `created` parameter (Unix seconds).
    #[must_use]
    pub fn created(&self) -> Option<i64> {
        self.created
    }

    /// The `expires` parameter (Unix seconds).
    #[must_use]
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }

    /// The `nonce` parameter.
    #[must_use]
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The scheme the `alg` parameter names, if present.
    #[must_use]
    pub fn alg(&self) -> Option<Scheme> {
        self.alg
    }

    /// The covered components' names, in order (`@method`, `date`, …).
    pub fn components(&self) -> impl Iterator<Item = &str> + '_ {
        self.components
            .iter()
            .filter_map(|(span, _)| self.component_name(span))
    }

    /// Whether `component` (`@path`, `content-digest`, …) is covered.
    #[must_use]
    pub fn covers(&self, component: &str) -> bool {
        self.components().any(|c| c == component)
    }

    /// The `@signature-params` value: the inner list and its parameters,
    /// as received.
    #[must_use]
    pub fn signature_params(&self) -> &str {
        &self.params
    }

    fn component_name(&self, span: &Range<usize>) -> Option<&str> {
        unquoted(&self.params, span)
    }

    fn has(&self, kind: Kind) -> bool {
        self.components.iter().any(|(_, k)| *k == kind)
    }

    /// Rampart's requirements on parameters and covered components.
    fn check_requirements(&self, req: &RequestView<'_>) -> Result<(), AuthError> {
        if self.created.is_none() {
            return Err(malformed("missing signature parameter `created`"));
        }
        if self.nonce.is_none() {
            return Err(malformed("missing signature parameter `nonce`"));
        }
        if !self.has(Kind::Method) {
            return Err(malformed("signature does not cover `@method`"));
        }
        if !self.has(Kind::TargetUri) {
            let missing: Vec<&str> = [
                (Kind::Authority, "`@authority`"),
                (Kind::Path, "`@path`"),
                (Kind::Query, "`@query`"),
            ]
            .into_iter()
            .filter(|(k, _)| !self.has(*k))
            .map(|(_, name)| name)
            .collect();
            if !missing.is_empty() {
                return Err(malformed(format!(
                    "signature does not cover `@target-uri`, nor {} (needs `@target-uri` or `@authority` + `@path` + `@query`)",
                    missing.join(" + ")
                )));
            }
        }
        if !req.body.is_empty() && !self.covers(CONTENT_DIGEST_COMPONENT) {
            return Err(malformed(
                "signature does not cover `content-digest`, required for a request body",
            ));
        }
        Ok(())
    }

    /// The signature base (RFC 9421 §2.5) for this request.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] when a covered header is absent or not
    /// visible ASCII, or the request target has characters a signature base
    /// cannot carry.
    pub fn signature_base(&self, req: &RequestView<'_>) -> Result<String, AuthError> {
        build_base(&self.params, &self.components, req)
    }

    /// Checks Rampart's requirements (as [`parse`] does, against this
    /// request's body), then [`Parsed::verify_signature`]. This is what the
    /// gateway calls, with the key the claims named.
    ///
    /// # Errors
    ///
    /// As [`Parsed::verify_signature`], and [`AuthError::Malformed`] for a
    /// missing requirement.
    pub fn verify(
        &self,
        req: &RequestView<'_>,
        scheme: Scheme,
        key: &KeyMaterial,
    ) -> Result<(), AuthError> {
        self.check_requirements(req)?;
        self.verify_signature(req, scheme, key)
    }

    /// Verifies the signature (RFC 9421 §3.2) with `key`, registered for
    /// `scheme`, and, when `content-digest` is covered, the body against
    /// `Content-Digest` (after the signature, so an unauthenticated
    /// request costs no hashing of its body). Does not check Rampart's
    /// requirements; [`Parsed::verify`] does.
    ///
    /// # Errors
    ///
    /// - [`AuthError::AlgorithmMismatch`]: `scheme` is not an RFC 9421
    ///   scheme, `key` is not for `scheme`, or `alg` names another one;
    /// - [`AuthError::Malformed`]: the base cannot be built;
    /// - [`AuthError::BadSignature`]: the signature does not verify;
    /// - [`AuthError::Digest`]: `Content-Digest` is missing or does not
    ///   match the body.
    pub fn verify_signature(
        &self,
        req: &RequestView<'_>,
        scheme: Scheme,
        key: &KeyMaterial,
    ) -> Result<(), AuthError> {
        check_key(scheme, key)?;
        if let Some(alg) = self.alg {
            if alg != scheme {
                return Err(AuthError::AlgorithmMismatch(
                    "`alg` does not match the key's algorithm",
                ));
            }
        }
        let covers_digest = self.covers(CONTENT_DIGEST_COMPONENT);
        if covers_digest && !req.headers.contains_key(CONTENT_DIGEST) {
            return Err(AuthError::Digest(
                "missing Content-Digest for a request body",
            ));
        }
        let base = self.signature_base(req)?;
        verify_raw(base.as_bytes(), &self.signature, scheme, key)?;
        if covers_digest {
            digest::verify_content_digest(req.headers, req.body)?;
        }
        Ok(())
    }
}

/// Checks that the request target's parts hold only visible ASCII, so no
/// value can smuggle a line break or another component into the base.
fn check_target(req: &RequestView<'_>) -> Result<(), AuthError> {
    let ok = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if ok(req.path_and_query) && ok(req.authority) && ok(req.scheme) {
        Ok(())
    } else {
        Err(malformed(
            "request target has characters a signature base cannot carry",
        ))
    }
}

fn push_lower(out: &mut String, s: &str) {
    out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
}

/// `@authority`: lowercase, without the scheme's default port.
fn push_authority(out: &mut String, req: &RequestView<'_>) {
    let default_port = if req.scheme.eq_ignore_ascii_case("https") {
        Some(":443")
    } else if req.scheme.eq_ignore_ascii_case("http") {
        Some(":80")
    } else {
        None
    };
    let authority = default_port
        .and_then(|p| req.authority.strip_suffix(p))
        .unwrap_or(req.authority);
    push_lower(out, authority);
}

fn push_field(out: &mut String, name: &str, headers: &HeaderMap) -> Result<(), AuthError> {
    let mut any = false;
    for line in headers.get_all(name) {
        let line = line
            .to_str()
            .map_err(|_| malformed(format!("covered header `{name}` is not visible ASCII")))?;
        if any {
            out.push_str(", ");
        }
        out.push_str(line.trim_matches([' ', '\t']));
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(malformed(format!("covered header `{name}` is absent")))
    }
}

/// Builds the signature base (RFC 9421 §2.5): one line per covered
/// component, in order, then `"@signature-params"`.
fn build_base(
    params: &str,
    components: &[(Range<usize>, Kind)],
    req: &RequestView<'_>,
) -> Result<String, AuthError> {
    check_target(req)?;
    let (path, query) = match req.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path_and_query, None),
    };
    let mut base = String::with_capacity(256 + 2 * params.len() + 2 * req.path_and_query.len());
    for (span, kind) in components {
        let ident = params
            .get(span.clone())
            .ok_or_else(|| malformed("internal component span error"))?;
        base.push_str(ident);
        base.push_str(": ");
        match kind {
            Kind::Method => base.push_str(req.method.as_str()),
            Kind::TargetUri => {
                push_lower(&mut base, req.scheme);
                base.push_str("://");
                push_authority(&mut base, req);
                base.push_str(req.path_and_query);
            }
            Kind::Authority => push_authority(&mut base, req),
            Kind::Scheme => push_lower(&mut base, req.scheme),
            Kind::Path => base.push_str(if path.is_empty() { "/" } else { path }),
            Kind::Query => {
                base.push('?');
                base.push_str(query.unwrap_or(""));
            }
            Kind::RequestTarget => base.push_str(req.path_and_query),
            Kind::Field => {
                let name = ident
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .ok_or_else(|| malformed("internal component span error"))?;
                push_field(&mut base, name, req.headers)?;
            }
        }
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params);
    Ok(base)
}

fn is_rfc9421(scheme: Scheme) -> bool {
    matches!(
        scheme,
        Scheme::Rfc9421HmacSha256 | Scheme::Rfc9421Ed25519 | Scheme::Rfc9421EcdsaP256
    )
}

fn check_key(scheme: Scheme, key: &KeyMaterial) -> Result<(), AuthError> {
    match (scheme, key) {
        (Scheme::Rfc9421HmacSha256, KeyMaterial::Hmac(_))
        | (Scheme::Rfc9421Ed25519, KeyMaterial::Ed25519(_))
        | (Scheme::Rfc9421EcdsaP256, KeyMaterial::EcdsaP256(_)) => Ok(()),
        (s, _) if is_rfc9421(s) => Err(AuthError::AlgorithmMismatch(
            "key type does not match the scheme",
        )),
        _ => Err(AuthError::AlgorithmMismatch("not an RFC 9421 scheme")),
    }
}

/// Verifies `signature` over a signature base with `key`, registered for
/// `scheme`: `hmac-sha256` (constant-time), `ed25519`, or
/// `ecdsa-p256-sha256` (raw `r‖s`). The low-level step of
/// [`Parsed::verify_signature`].
///
/// # Errors
///
/// [`AuthError::AlgorithmMismatch`] when `key` is not for `scheme` or
/// `scheme` is not an RFC 9421 scheme; [`AuthError::BadSignature`] when the
/// signature does not verify.
pub fn verify_raw(
    base: &[u8],
    signature: &[u8],
    scheme: Scheme,
    key: &KeyMaterial,
) -> Result<(), AuthError> {
    check_key(scheme, key)?;
    let ok = match key {
        KeyMaterial::Hmac(secret) => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            hmac::verify(&key, base, signature).is_ok()
        }
        KeyMaterial::Ed25519(public) => UnparsedPublicKey::new(&ED25519, public)
            .verify(base, signature)
            .is_ok(),
        KeyMaterial::EcdsaP256(public) => {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public.as_slice())
                .verify(base, signature)
                .is_ok()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// A client's signing key. `Debug` never shows key material.
pub enum SigningKey {
    /// An `hmac-sha256` shared secret.
    Hmac(Zeroizing<Vec<u8>>),
    /// An `ed25519` key pair.
    Ed25519(Ed25519KeyPair),
    /// An `ecdsa-p256-sha256` key pair; it must have been made for
    /// `ECDSA_P256_SHA256_FIXED_SIGNING` (raw `r‖s` signatures).
    EcdsaP256(EcdsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Hmac(_) => f.write_str("SigningKey::Hmac(**REDACTED**)"),
            SigningKey::Ed25519(_) => f.write_str("SigningKey::Ed25519(**REDACTED**)"),
            SigningKey::EcdsaP256(_) => f.write_str("SigningKey::EcdsaP256(**REDACTED**)"),
        }
    }
}

impl SigningKey {
    /// The RFC 9421 scheme this key signs for.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        match self {
            SigningKey::Hmac(_) => Scheme::Rfc9421HmacSha256,
            SigningKey::Ed25519(_) => Scheme::Rfc9421Ed25519,
            SigningKey::EcdsaP256(_) => Scheme::Rfc9421EcdsaP256,
        }
    }

    /// The key material a verifier needs: the shared secret (copied) or
    /// the public key.
    ///
    /// # Errors
    ///
    /// [`AuthError::AlgorithmMismatch`] if an Ed25519 public key is not 32
    /// bytes (cannot happen with aws-lc-rs key pairs).
    pub fn verifying_key(&self) -> Result<KeyMaterial, AuthError> {
        Ok(match self {
            SigningKey::Hmac(secret) => KeyMaterial::Hmac(secret.clone()),
            SigningKey::Ed25519(pair) => KeyMaterial::Ed25519(
                pair.public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| AuthError::AlgorithmMismatch("ed25519 public key length"))?,
            ),
            SigningKey::EcdsaP256(pair) => {
                KeyMaterial::EcdsaP256(pair.public_key().as_ref().to_vec())
            }
        })
    }
}

/// Signs a signature base with `key` for `scheme`. The low-level step of
/// [`sign`].
///
/// # Errors
///
/// [`AuthError::AlgorithmMismatch`] when `key` is not for `scheme` (or an
/// ECDSA key pair was not made for `ECDSA_P256_SHA256_FIXED_SIGNING`);
/// [`AuthError::Malformed`] if the crypto library fails to sign.
pub fn sign_raw(base: &[u8], scheme: Scheme, key: &SigningKey) -> Result<Vec<u8>, AuthError> {
    if !is_rfc9421(scheme) {
        return Err(AuthError::AlgorithmMismatch("not an RFC 9421 scheme"));
    }
    if key.scheme() != scheme {
        return Err(AuthError::AlgorithmMismatch(
            "key type does not match the scheme",
        ));
    }
    match key {
        SigningKey::Hmac(secret) => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            Ok(hmac::sign(&key, base).as_ref().to_vec())
        }
        SigningKey::Ed25519(pair) => Ok(pair.sign(base).as_ref().to_vec()),
        SigningKey::EcdsaP256(pair) => {
            if pair.algorithm() != &ECDSA_P256_SHA256_FIXED_SIGNING {
                return Err(AuthError::AlgorithmMismatch(
                    "ECDSA key pair must be made for ECDSA_P256_SHA256_FIXED_SIGNING",
                ));
            }
            pair.sign(&SystemRandom::new(), base)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| malformed("ecdsa-p256-sha256 signing failed"))
        }
    }
}

/// The two header values [`sign`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// The `Signature-Input` value (`sig1=(…);created=…;…`).
    pub signature_input: String,
    /// The `Signature` value (`sig1=:…:`).
    pub signature: String,
}

impl SignatureHeaders {
    /// Sets `Signature-Input` and `Signature` on `headers`, replacing any
    /// present.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] if a value is not a valid header value
    /// (cannot happen with values from [`sign`]).
    pub fn insert_into(&self, headers: &mut HeaderMap) -> Result<(), AuthError> {
        let bad = |_| malformed("signature header value is not a valid header value");
        headers.insert(
            SIGNATURE_INPUT,
            HeaderValue::from_str(&self.signature_input).map_err(bad)?,
        );
        headers.insert(
            SIGNATURE,
            HeaderValue::from_str(&self.signature).map_err(bad)?,
        );
        Ok(())
    }
}

/// Signs a request (client side) with label `sig1`, covering `"@method"`,
/// `"@authority"`, `"@path"`, `"@query"`, `"content-digest"` when the body
/// is not empty, then `extra_headers` (lowercase field names such as
/// `rampart-mfa`; repeats are dropped), with parameters `created`, `nonce`,
/// `keyid` and `alg`.
///
/// `req.headers` must already hold every covered header, `Content-Digest`
/// included for a body (see [`crate::digest::content_digest`]).
///
/// # Errors
///
/// - [`AuthError::AlgorithmMismatch`]: `key` is not for `scheme`;
/// - [`AuthError::Digest`]: a body without a `Content-Digest` header;
/// - [`AuthError::Malformed`]: an invalid `key_id` (1 to 256 printable
///   ASCII), `nonce` (1 to 128 visible ASCII) or negative `created`, an
///   extra header that is not a lowercase field name, more than 64
///   components, or a covered header that is absent.
pub fn sign(
    req: &RequestView<'_>,
    key_id: &str,
    scheme: Scheme,
    key: &SigningKey,
    created: i64,
    nonce: &str,
    extra_headers: &[&str],
) -> Result<SignatureHeaders, AuthError> {
    if !is_rfc9421(scheme) {
        return Err(AuthError::AlgorithmMismatch("not an RFC 9421 scheme"));
    }
    if key.scheme() != scheme {
        return Err(AuthError::AlgorithmMismatch(
            "key type does not match the scheme",
        ));
    }
    if !valid_key_id(key_id) {
        return Err(malformed(
            "key id must be 1 to 256 printable ASCII characters",
        ));
    }
    if !valid_nonce(nonce) {
        return Err(malformed("nonce must be 1 to 128 visible ASCII characters"));
    }
    if created < 0 {
        return Err(malformed("created must not be negative"));
    }
    let mut names: Vec<&str> = Vec::with_capacity(5 + extra_headers.len());
    names.extend(["@method", "@authority", "@path", "@query"]);
    if !req.body.is_empty() {
        if !req.headers.contains_key(CONTENT_DIGEST) {
            return Err(AuthError::Digest(
                "missing Content-Digest for a request body",
            ));
        }
        names.push(CONTENT_DIGEST_COMPONENT);
    }
    for extra in extra_headers {
        if classify(extra)? != Kind::Field {
            return Err(malformed(format!("`{extra}` is not a header field name")));
        }
        if !names.contains(extra) {
            names.push(extra);
        }
    }
    if names.len() > MAX_COMPONENTS {
        return Err(malformed("too many covered components"));
    }

    let mut params = String::with_capacity(
        names.iter().map(|n| n.len() + 3).sum::<usize>() + key_id.len() + nonce.len() + 80,
    );
    let mut components = Vec::with_capacity(names.len());
    params.push('(');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            params.push(' ');
        }
        let start = params.len();
        params.push('"');
        params.push_str(name);
        params.push('"');
        components.push((start..params.len(), classify(name)?));
    }
    params.push_str(");created=");
    params.push_str(&created.to_string());
    params.push_str(";nonce=");
    sfv::write_string(&mut params, nonce);
    params.push_str(";keyid=");
    sfv::write_string(&mut params, key_id);
    params.push_str(";alg=\"");
    params.push_str(scheme.as_str());
    params.push('"');

    let base = build_base(&params, &components, req)?;
    let sig = sign_raw(base.as_bytes(), scheme, key)?;

    let mut signature_input = String::with_capacity(LABEL.len() + 1 + params.len());
    signature_input.push_str(LABEL);
    signature_input.push('=');
    signature_input.push_str(&params);
    let mut signature = String::with_capacity(LABEL.len() + 3 + sig.len().div_ceil(3) * 4);
    signature.push_str(LABEL);
    signature.push_str("=:");
    BASE64.encode_string(&sig, &mut signature);
    signature.push(':');
    Ok(SignatureHeaders {
        signature_input,
        signature,
    })
}
