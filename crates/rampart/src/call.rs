//! `rampart call`: sign a request with a key from a credentials file, send
//! it to the gateway and print the status and body.
//!
//! ```text
//! rampart call [--credentials FILE] [--key NAME_OR_KEY_ID] [--data JSON]
//!              [--header 'Name: value']... [--mfa CODE] METHOD URL
//! ```
//!
//! - `--credentials` defaults to `./rampart-data/demo-credentials.json`
//!   (what `rampart demo` writes); it supplies the keys and the CA that
//!   signs the gateway's certificate (trusted alone: TLS 1.3, HTTP/2 or
//!   HTTP/1.1 by ALPN).
//! - Without `--key` the request is sent **unsigned**, for public routes
//!   (`/v1/time`, `/v1/markets`, …). With it, the request is signed in the
//!   key's scheme (RFC 9421 or an exchange-style profile) by
//!   `rampart_client::sign`, over the URL's authority, path and query.
//! - `--data` is the body; it must be JSON and is sent as
//!   `application/json` unless a `--header 'Content-Type: …'` says
//!   otherwise.
//! - `--mfa CODE` adds `Rampart-MFA: totp=CODE` (a value already starting
//!   with `totp=` or `token=` is sent as given), which the RFC 9421
//!   signature covers; it needs `--key`. `--mfa totp` computes the current
//!   code from the credentials file's `totp_secret_base32` (the demo's).
//! - `URL` is absolute and `https`.
//!
//! Output: `HTTP <status>` on the first line of stdout, then the body
//! (pretty-printed when it is JSON). Exit code 0 for a 2xx status, 1 for
//! any other status, 2 for a usage, credentials or transport error
//! (message on stderr).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rampart_client::http::uri::Scheme as UriScheme;
use rampart_client::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use rampart_client::{Client, ClientError, Credentials, Response, MFA_HEADER};

/// Arguments of `rampart call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Credentials file (the `demo-credentials.json` shape): keys and the
    /// gateway's CA certificate.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "./rampart-data/demo-credentials.json"
    )]
    credentials: PathBuf,
    /// Key to sign with, by name (`trader-hmac`) or key id. Without it the
    /// request is sent unsigned (public routes only).
    #[arg(long, value_name = "NAME_OR_KEY_ID")]
    key: Option<String>,
    /// Request body, JSON (sent as `application/json`).
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// MFA step-up: sends `Rampart-MFA: totp=CODE`, covered by the
    /// signature (needs --key).
    #[arg(long, value_name = "CODE")]
    mfa: Option<String>,
    /// HTTP method (GET, POST, DELETE, …).
    method: String,
    /// Absolute https URL, e.g. https://127.0.0.1:8443/v1/account
    url: String,
}

/// Exit code for usage, credentials and transport errors.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

fn usage(msg: impl Into<String>) -> CallError {
    CallError::Usage(msg.into())
}

/// Runs `rampart call` on a current-thread runtime; prints to stdout.
pub fn run(args: CallArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rampart call: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = runtime.block_on(call(&args)).and_then(|response| {
        let mut out = std::io::stdout().lock();
        print_response(&response, &mut out)?;
        out.flush()?;
        Ok(response)
    });
    match result {
        Ok(response) if response.status.is_success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        // The reader went away (`| head`): nothing left to tell it.
        Err(CallError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_ERROR)
        }
        Err(e) => {
            eprintln!("rampart call: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Builds, signs and sends the request.
async fn call(args: &CallArgs) -> Result<Response, CallError> {
    let method = parse_method(&args.method)?;
    let (origin, path_and_query) = parse_url(&args.url)?;
    let body = match &args.data {
        Some(data) => {
            serde_json::from_str::<serde_json::Value>(data)
                .map_err(|e| usage(format!("--data is not valid JSON: {e}")))?;
            Some(data.as_bytes().to_vec())
        }
        None => None,
    };
    let mut headers = HeaderMap::new();
    for line in &args.headers {
        let (name, value) = parse_header(line)?;
        headers.append(name, value);
    }
    if args.mfa.is_some() && args.key.is_none() {
        return Err(usage(
            "--mfa needs --key: the step-up proof must be covered by the request's signature",
        ));
    }
    let creds = Credentials::load(&args.credentials).map_err(|e| {
        usage(format!(
            "cannot load the credentials: {e} (start `rampart demo` first, or pass --credentials FILE)"
        ))
    })?;
    if let Some(code) = &args.mfa {
        let code = if code.trim() == "totp" {
            current_totp(&creds)?
        } else {
            code.clone()
        };
        headers.insert(MFA_HEADER, mfa_value(&code)?);
    }
    let key = match &args.key {
        Some(wanted) => Some(creds.key(wanted).ok_or_else(|| {
            let names: Vec<&str> = creds.keys.iter().map(|k| k.name()).collect();
            usage(format!(
                "no key `{wanted}` in `{}` (keys: {})",
                args.credentials.display(),
                names.join(", ")
            ))
        })?),
        None => None,
    };
    let client = Client::new(&origin, &creds.read_ca_pem()?)?;
    Ok(client
        .send(key, method, &path_and_query, body, headers)
        .await?)
}

fn parse_method(text: &str) -> Result<Method, CallError> {
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| usage(format!("`{text}` is not an HTTP method")))
}

/// `https://authority` and the origin-form target of an absolute https URL.
fn parse_url(url: &str) -> Result<(String, String), CallError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| usage(format!("`{url}` is not a URL")))?;
    if uri.scheme() != Some(&UriScheme::HTTPS) {
        return Err(usage(format!(
            "`{url}` must be an absolute https URL (e.g. https://127.0.0.1:8443/v1/markets)"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| usage(format!("`{url}` has no host")))?;
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path_and_query = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    Ok((
        format!("https://{}", authority.as_str()),
        path_and_query.to_owned(),
    ))
}

/// `Name: value` → a header.
fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), CallError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| usage(format!("--header `{line}` is not `Name: value`")))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| usage(format!("--header `{line}`: invalid header name")))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| usage(format!("--header `{line}`: invalid header value")))?;
    Ok((name, value))
}

/// `--mfa totp`: the current code of the credentials file's TOTP seed.
fn current_totp(creds: &Credentials) -> Result<String, CallError> {
    let seed = creds
        .totp_secret_base32()
        .and_then(rampart_auth::totp::base32_decode)
        .ok_or_else(|| usage("--mfa totp: the credentials file has no totp_secret_base32"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(rampart_auth::totp::code_at(
        &seed,
        &rampart_auth::totp::TotpParams::default(),
        now,
    ))
}

/// The `Rampart-MFA` value for `--mfa CODE`.
fn mfa_value(code: &str) -> Result<HeaderValue, CallError> {
    let code = code.trim();
    let value = if code.starts_with("totp=") || code.starts_with("token=") {
        code.to_owned()
    } else {
        format!("totp={code}")
    };
    HeaderValue::from_str(&value).map_err(|_| usage("--mfa: invalid code"))
}

/// `HTTP <status>`, then the body (pretty JSON when it parses).
fn print_response(response: &Response, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "HTTP {}", response.status.as_u16())?;
    if response.body.is_empty() {
        return Ok(());
    }
    match response.json() {
        Some(json) => {
            serde_json::to_writer_pretty(&mut *out, &json)?;
            writeln!(out)
        }
        None => {
            let text = String::from_utf8_lossy(&response.body);
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::disallowed_methods,
        reason = "test code"
    )]

    use super::*;

    #[test]
    fn urls_must_be_absolute_https() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443/v1/orders?symbol=BTC-USD").unwrap(),
            (
                "https://127.0.0.1:8443".to_owned(),
                "/v1/orders?symbol=BTC-USD".to_owned()
            )
        );
        assert_eq!(
            parse_url("https://localhost:8443").unwrap().1,
            "/".to_owned()
        );
        for bad in [
            "http://127.0.0.1:8443/v1/time",
            "/v1/time",
            "127.0.0.1:8443/v1/time",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_methods_and_mfa_codes_parse() {
        let (name, value) = parse_header("X-Request-Tag:  abc ").unwrap();
        assert_eq!(name, "x-request-tag");
        assert_eq!(value, "abc");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert_eq!(parse_method("post").unwrap(), Method::POST);
        assert!(parse_method("GE T").is_err());
        assert_eq!(mfa_value("123456").unwrap(), "totp=123456");
        assert_eq!(mfa_value("token=abc").unwrap(), "token=abc");
        assert!(mfa_value("12\n34").is_err());
    }

    fn response(status: u16, body: &[u8]) -> Response {
        Response {
            status: rampart_client::http::StatusCode::from_u16(status).unwrap(),
            version: rampart_client::http::Version::HTTP_2,
            headers: HeaderMap::new(),
            body: rampart_client::bytes::Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn output_is_status_then_pretty_json_or_text() {
        let mut out = Vec::new();
        print_response(&response(200, br#"{"a":1}"#), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP 200\n{\n  \"a\": 1\n}\n"
        );
        let mut out = Vec::new();
        print_response(&response(502, b"bad gateway"), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "HTTP 502\nbad gateway\n");
        let mut out = Vec::new();
        print_response(&response(204, b""), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "HTTP 204\n");
    }

    #[test]
    fn mfa_without_a_key_is_a_usage_error() {
        let args = CallArgs {
            credentials: PathBuf::from("/nonexistent/creds.json"),
            key: None,
            data: None,
            headers: Vec::new(),
            mfa: Some("123456".to_owned()),
            method: "POST".to_owned(),
            url: "https://127.0.0.1:8443/v1/withdrawals".to_owned(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(call(&args)).unwrap_err();
        assert!(err.to_string().contains("--mfa needs --key"), "{err}");

        let args = CallArgs {
            mfa: None,
            data: Some("{not json".to_owned()),
            ..args
        };
        let err = rt.block_on(call(&args)).unwrap_err();
        assert!(
            err.to_string().contains("--data is not valid JSON"),
            "{err}"
        );

        let args = CallArgs { data: None, ..args };
        let err = rt.block_on(call(&args)).unwrap_err();
        assert!(
            err.to_string().contains("cannot load the credentials"),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/creds.json"), "{err}");
    }
}
