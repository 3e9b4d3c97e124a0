//! Exporting the audit log to a SIEM: OCSF records ([`crate::ocsf`]) to a
//! JSON-lines file or to syslog over TLS, at least once, with a persisted
//! cursor.
//!
//! # Delivery
//!
//! Each exporter has a name and a cursor file
//! `<state_dir>/export-<name>.cursor` holding the index of the next entry
//! to send. The exporter reads entries from the cursor in batches (at most
//! [`MAX_BATCH`] entries and about [`MAX_BATCH_BYTES`] bytes), hands a
//! batch to its [`Sink`], and only once the sink has **accepted** the batch
//! does it replace the cursor file (temporary file, `fsync`, `rename`,
//! `fsync` of the directory). What "accepted" means is the sink's:
//!
//! - [`FileSink`]: the lines were written and `fdatasync`ed;
//! - [`SyslogSink`]: the frames were written and flushed to the TLS stream,
//!   that is handed to the kernel's TCP send buffer. RFC 5425 has no
//!   application acknowledgement, so this does **not** mean the receiver
//!   has read or stored them.
//!
//! What this guarantees:
//!
//! - **No gaps from the exporter's side.** An entry is never passed over:
//!   the cursor only moves past entries the sink accepted, an entry that
//!   does not parse is exported as a minimal record carrying its bytes
//!   ([`OcsfRecord::from_entry`]), and an entry that cannot be read stops
//!   the exporter at that index (logged and retried with backoff) rather
//!   than being skipped. The two exceptions are logged as warnings:
//!   entries pruned by retention before they were exported, and a log
//!   that became shorter than the cursor (restored from a backup), after
//!   which the cursor is moved back to the log's end.
//! - **Duplicates only around a failure.** A crash, kill or error after a
//!   batch was accepted and before the cursor was replaced re-sends that
//!   batch (at most [`MAX_BATCH`] entries) on the next attempt; so does a
//!   write error in the middle of a batch. Records are deterministic, so a
//!   duplicate is identical to the original and `metadata.sequence` (the
//!   log index) or `metadata.uid` (the event id) de-duplicates.
//! - **Syslog, clean close by the receiver.** Before each batch the sink
//!   checks whether the receiver has closed the connection (TLS
//!   `close_notify`, TCP FIN or reset) and, if so, reconnects before
//!   writing: a receiver that closes the connection between batches
//!   after reading what it was sent (an idle timeout, a restart) loses
//!   nothing.
//!
//! What is **not** guaranteed (syslog): that the receiver read, let alone
//! stored, an accepted batch. Bytes the local kernel has accepted but the
//! receiver has not yet read are lost, silently, if the connection then
//! fails: the receiver crashes or closes with unread data, the network
//! drops, or the receiver closes just as a batch is written (after the
//! check above). The exposure is bounded by what the kernel buffers (the
//! socket's send buffer plus the bytes in flight, typically a few MiB):
//! once that is full, the write blocks and [`SyslogConfig::write_timeout`]
//! turns it into an error and a reconnect, and from then on nothing is
//! accepted until a new connection is up. The audit log stays the source
//! of truth: a gap found in the SIEM (a hole in `metadata.sequence`) is
//! repaired by moving the exporter's cursor back (stop the exporter,
//! write the index into the cursor file) and letting it re-send.
//!
//! # Transports
//!
//! - [`FileSink`]: appends one OCSF object per line to a file created
//!   with mode 0600. A line torn by a crash is left in place, followed by
//!   a newline so it stays alone on its line, and the batch is re-sent
//!   after it: consumers must skip a line that is not valid JSON. The
//!   file is opened for each batch, so rotating it by renaming needs no
//!   signal: the next batch creates a new file.
//! - [`SyslogSink`]: RFC 5424 messages over TLS 1.3 (only) with RFC 5425
//!   octet-counting framing (`MSG-LEN SP SYSLOG-MSG`), trusting the CA
//!   certificates of one PEM file, `<PRI>1 TIMESTAMP HOSTNAME rampart -
//!   TYPE [rampart@32473 idx="N"] <OCSF JSON>`. PRI is `facility * 8 +
//!   severity`, with facility 13 (log audit) unless configured and the
//!   severity from the OCSF severity ([`syslog_severity`]). Messages are
//!   never truncated (that would break the JSON); receivers must accept
//!   messages as large as the largest record (entries are at most 64 KiB,
//!   so about 100 KiB; RFC 5425 receivers only have to accept 2 KiB and
//!   should accept 8 KiB, so raise the limit, e.g. rsyslog's
//!   `$MaxMessageSize`). `32473` is the private enterprise number reserved
//!   for documentation (RFC 5612).
//!
//! # Loop
//!
//! [`run_exporter`] opens the log, drains it from the cursor batch by
//! batch, sleeps `poll` when caught up, and retries any error (log not
//! readable, sink refusing, cursor not writable) with capped exponential
//! backoff ([`ExportOptions`]), logging each under the tracing target
//! `rampart::audit`. It never panics and returns only on shutdown (or at
//! once for an invalid exporter name). Shutdown is checked between
//! batches, never in the middle of one, so a stream is never left with a
//! partial frame.

use std::fmt;
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::log::LogError;
use crate::ocsf::OcsfRecord;
use crate::reader::LogReader;

/// Largest number of entries in one batch.
pub const MAX_BATCH: usize = 1000;
/// A batch ends after the entry that brings it to this many entry bytes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Default syslog facility: 13, log audit.
pub const DEFAULT_FACILITY: u8 = 13;
/// Syslog APP-NAME.
pub const APP_NAME: &str = "rampart";
/// SD-ID of the structured data element carrying the log index
/// (`32473` is the documentation enterprise number of RFC 5612).
pub const SD_ID: &str = "rampart@32473";
/// Default limit for connecting to the syslog receiver (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit for writing and flushing one batch to the receiver.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET: &str = "rampart::audit";

/// Errors of the exporters.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The exporter name cannot be used in a file name.
    #[error("invalid exporter name `{0}`: use 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`")]
    InvalidName(String),
    /// The cursor file could not be read, parsed or replaced.
    #[error("export cursor {}: {reason}", path.display())]
    Cursor {
        /// The cursor file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The audit log could not be opened or read.
    #[error("reading the audit log: {0}")]
    Source(String),
    /// The export file could not be written.
    #[error("export file {}: {reason}", path.display())]
    File {
        /// The export file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The syslog configuration is unusable (CA file, server name,
    /// facility).
    #[error("syslog configuration: {0}")]
    Config(String),
    /// Connecting to the syslog receiver failed (TCP, TLS handshake,
    /// certificate, timeout).
    #[error("connecting to syslog receiver {address}: {reason}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
    /// Writing to the syslog receiver failed; the connection is dropped.
    #[error("sending to syslog receiver {address}: {reason}")]
    Send {
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
}

/// Where exported entries come from: the audit log's reader, or any
/// other ordered, gap-free sequence of entries (tests use memory).
pub trait EntrySource {
    /// Error of reading.
    type Error: fmt::Display;

    /// Index of the oldest entry still present (entries below were
    /// pruned).
    fn first_index(&self) -> u64;

    /// One past the newest entry.
    fn end_index(&self) -> u64;

    /// Entries in index order from `index` (at most up to
    /// [`EntrySource::end_index`]).
    fn entries_from(
        &self,
        index: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), Self::Error>> + '_;

    /// One entry.
    ///
    /// # Errors
    /// The source's error (absent, unreadable).
    fn entry(&self, index: u64) -> Result<Vec<u8>, Self::Error>;
}

impl EntrySource for LogReader {
    type Error = LogError;

    fn first_index(&self) -> u64 {
        LogReader::first_index(self)
    }

    fn end_index(&self) -> u64 {
        self.len()
    }

    fn entries_from(
        &self,
        index: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        self.iter_from(index)
    }

    fn entry(&self, index: u64) -> Result<Vec<u8>, LogError> {
        self.get(index)
    }
}

/// The persisted position of one exporter: the index of the next entry to
/// send, in `<state_dir>/export-<name>.cursor` (decimal and a newline).
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    next: Option<u64>,
}

impl Cursor {
    /// The cursor file of exporter `name` in `state_dir`.
    ///
    /// # Errors
    /// [`SinkError::InvalidName`] unless `name` is 1 to 64 characters of
    /// `A-Z a-z 0-9 _ -`.
    pub fn path_for(state_dir: &Path, name: &str) -> Result<PathBuf, SinkError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(SinkError::InvalidName(name.to_owned()));
        }
        Ok(state_dir.join(format!("export-{name}.cursor")))
    }

    /// Reads the cursor of exporter `name`; a missing file is a cursor
    /// that has never been stored ([`Cursor::next`] is `None`).
    ///
    /// # Errors
    /// [`SinkError::InvalidName`], or [`SinkError::Cursor`] if the file
    /// cannot be read or does not hold a number: a damaged cursor is
    /// reported, never silently reset.
    pub fn load(state_dir: &Path, name: &str) -> Result<Self, SinkError> {
        let path = Self::path_for(state_dir, name)?;
        let next = match std::fs::read(&path) {
            Ok(bytes) => Some(parse_cursor(&bytes).ok_or_else(|| SinkError::Cursor {
                path: path.clone(),
                reason: "not a cursor (expected a decimal index and a newline)".to_owned(),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(SinkError::Cursor {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        Ok(Self { path, next })
    }

    /// The cursor file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the next entry to send; `None` if never stored.
    #[must_use]
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// Replaces the cursor file atomically and durably: a temporary file
    /// (mode 0600) is written and `fsync`ed, renamed over the cursor, and
    /// the directory is `fsync`ed. The state directory is created (0700)
    /// if missing.
    ///
    /// # Errors
    /// [`SinkError::Cursor`]; the stored value is then unchanged.
    pub fn store(&mut self, next: u64) -> Result<(), SinkError> {
        let err = |e: std::io::Error| SinkError::Cursor {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(err)?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut file = private_options().write(true).truncate(true).open(&tmp)?;
            file.write_all(format!("{next}\n").as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(err)?;
        self.next = Some(next);
        Ok(())
    }
}

fn parse_cursor(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `OpenOptions` that create files readable by their owner only.
fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(unix)]
fn restrict(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// A destination for OCSF records.
pub trait Sink: Send {
    /// Delivers a batch, in order. `Ok` means the batch is accepted (see
    /// the module documentation for what each sink promises) and the
    /// cursor may move past it; on `Err` the whole batch is sent again.
    fn send(&mut self, batch: &[OcsfRecord]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Closes the connection or file cleanly (the exporter calls it on
    /// shutdown).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Appends OCSF records as JSON lines to a file (mode 0600), `fdatasync`ed
/// before a batch counts as accepted.
///
/// The file is opened (in append mode) for each batch and closed after
/// it, so renaming it away (log rotation) simply starts a new file at the
/// next batch. Its directory must exist.
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    /// A sink appending to `path` (created with mode 0600 if missing; an
    /// existing file is restricted to 0600 too).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The export file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Appends `lines` to the export file and `fdatasync`s it (and its
/// directory, when the file is new). If the file does not end with a
/// newline (a line torn by a crash), one is written first.
fn append_lines(path: &Path, lines: &[u8]) -> std::io::Result<()> {
    let existed = path.exists();
    let mut file = private_options().read(true).append(true).open(path)?;
    restrict(&file)?;
    let len = file.metadata()?.len();
    if len > 0 {
        file.seek(SeekFrom::Start(len.saturating_sub(1)))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last != *b"\n" {
            file.write_all(b"\n")?;
        }
    }
    file.write_all(lines)?;
    file.sync_data()?;
    if !existed {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Sink for FileSink {
    async fn send(&mut self, batch: &[OcsfRecord]) -> Result<(), SinkError> {
        let mut buf = Vec::new();
        for record in batch {
            buf.extend_from_slice(record.to_json().as_bytes());
            buf.push(b'\n');
        }
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || append_lines(&path, &buf)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::File {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) => Err(SinkError::File {
                path: self.path.clone(),
                reason: format!("writer task failed: {e}"),
            }),
        }
    }

    async fn close(&mut self) {}
}

/// Configuration of a [`SyslogSink`].
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// Receiver, `host:port` (RFC 5425's port is 6514).
    pub address: String,
    /// Name the receiver's certificate must carry (DNS name or IP).
    pub server_name: String,
    /// PEM file of the CA certificate(s) to trust; nothing else is
    /// trusted.
    pub ca_file: PathBuf,
    /// Syslog facility, 0 to 23.
    pub facility: u8,
    /// HOSTNAME field (printable ASCII, at most 255 characters; other
    /// characters are replaced by `_`, empty is `-`).
    pub hostname: String,
    /// Limit for connecting (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Limit for writing and flushing one batch.
    pub write_timeout: Duration,
}

impl SyslogConfig {
    /// A configuration with facility 13 (log audit), this host's name
    /// (from `/proc/sys/kernel/hostname` or `/etc/hostname`, else `-`) and
    /// the default timeouts.
    #[must_use]
    pub fn new(
        address: impl Into<String>,
        server_name: impl Into<String>,
        ca_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            address: address.into(),
            server_name: server_name.into(),
            ca_file: ca_file.into(),
            facility: DEFAULT_FACILITY,
            hostname: local_hostname(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

fn local_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let name = std::fs::read_to_string(p).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// A rustls client configuration trusting only the CA certificates in
/// `ca_pem`: aws-lc-rs provider, TLS 1.3 only, no client certificate.
///
/// # Errors
/// [`SinkError::Config`] when `ca_pem` holds no usable certificate.
pub fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, SinkError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| SinkError::Config(format!("CA certificate PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| SinkError::Config(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(SinkError::Config(
            "the CA file holds no PEM certificate".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SinkError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Sends OCSF records as RFC 5424 messages over TLS 1.3 with RFC 5425
/// octet-counting framing. Connects on the first batch, reconnects on
/// the next batch after any error (the exporter's backoff spaces the
/// attempts), and treats a batch as accepted once it is written and
/// flushed to the TLS stream.
pub struct SyslogSink {
    address: String,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    facility: u8,
    hostname: String,
    connect_timeout: Duration,
    write_timeout: Duration,
    stream: Option<TlsStream<TcpStream>>,
}

impl fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogSink")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .field("facility", &self.facility)
            .field("hostname", &self.hostname)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// A sink for `config`, reading its CA file now.
    ///
    /// # Errors
    /// [`SinkError::Config`]: unreadable CA file or no certificate in it,
    /// invalid server name, facility above 23.
    pub fn new(config: &SyslogConfig) -> Result<Self, SinkError> {
        let ca_pem = std::fs::read(&config.ca_file)
            .map_err(|e| SinkError::Config(format!("CA file {}: {e}", config.ca_file.display())))?;
        Self::with_ca_pem(config, &ca_pem)
    }

    /// A sink for `config` trusting the CA certificates in `ca_pem`
    /// (`config.ca_file` is not read).
    ///
    /// # Errors
    /// As [`SyslogSink::new`].
    pub fn with_ca_pem(config: &SyslogConfig, ca_pem: &[u8]) -> Result<Self, SinkError> {
        if config.facility > 23 {
            return Err(SinkError::Config(format!(
                "facility {} is not 0 to 23",
                config.facility
            )));
        }
        let server_name = ServerName::try_from(config.server_name.clone()).map_err(|_| {
            SinkError::Config(format!(
                "`{}` is not a valid server name",
                config.server_name
            ))
        })?;
        let tls = tls_config(ca_pem)?;
        Ok(Self {
            address: config.address.clone(),
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            facility: config.facility,
            hostname: header_field(&config.hostname, 255),
            connect_timeout: config.connect_timeout,
            write_timeout: config.write_timeout,
            stream: None,
        })
    }

    /// Whether a connection is open.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, SinkError> {
        let connect = async {
            let tcp = TcpStream::connect(self.address.as_str()).await?;
            tcp.set_nodelay(true)?;
            self.connector.connect(self.server_name.clone(), tcp).await
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(SinkError::Connect {
                address: self.address.clone(),
                reason: e.to_string(),
            }),
            Err(_) => Err(SinkError::Connect {
                address: self.address.clone(),
                reason: format!("timed out after {:?}", self.connect_timeout),
            }),
        }
    }
}

/// Whether the receiver still has the connection open: reads whatever is
/// readable without waiting; end of stream (TLS `close_notify` or TCP
/// FIN) or an error means closed. Data from the receiver (syslog
/// receivers send none) is discarded.
async fn still_open(stream: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 512];
    std::future::poll_fn(|cx| {
        // Bounded: a receiver cannot keep us here by sending data.
        for _ in 0..64 {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Ready(true),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(false),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(false),
            }
        }
        Poll::Ready(true)
    })
    .await
}

impl Sink for SyslogSink {
    async fn send(&mut self, batch: &[OcsfRecord]) -> Result<(), SinkError> {
        if let Some(stream) = self.stream.as_mut() {
            if !still_open(stream).await {
                tracing::info!(target: TARGET, address = %self.address, "the syslog receiver closed the connection; reconnecting");
                self.stream = None;
            }
        }
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        let mut buf = Vec::new();
        for record in batch {
            let msg = format_message(record, self.facility, &self.hostname);
            buf.extend_from_slice(&frame(&msg));
        }
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                self.stream = Some(stream);
                Ok(())
            }
            // The stream may hold part of a frame: it is dropped, never
            // reused.
            Ok(Err(e)) => Err(SinkError::Send {
                address: self.address.clone(),
                reason: e.to_string(),
            }),
            Err(_) => Err(SinkError::Send {
                address: self.address.clone(),
                reason: format!("timed out after {:?}", self.write_timeout),
            }),
        }
    }

    async fn close(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            // `close_notify`, then FIN.
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
    }
}

/// Syslog severity (RFC 5424 §6.2.1) of an OCSF `severity_id`:
/// Informational → 6 (informational), Low → 5 (notice), Medium → 4
/// (warning), High → 3 (error), Critical → 2 (critical), Fatal → 1
/// (alert), Unknown or Other → 5 (notice).
#[must_use]
pub const fn syslog_severity(ocsf_severity: u8) -> u8 {
    match ocsf_severity {
        1 => 6,
        3 => 4,
        4 => 3,
        5 => 2,
        6 => 1,
        _ => 5,
    }
}

/// Keeps printable ASCII (33 to 126), replacing anything else by `_`, at
/// most `max` characters; empty becomes the NILVALUE `-`.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// The RFC 5424 message of a record:
/// `<PRI>1 TIMESTAMP HOSTNAME rampart - TYPE [rampart@32473 idx="N"] JSON`,
/// where PRI is `facility * 8 + syslog_severity(severity_id)`, TIMESTAMP
/// the event time in UTC with microseconds (`-` outside years 0 to
/// 9999), TYPE the Rampart event type as MSGID (printable ASCII, at most
/// 32 characters) and JSON the OCSF object. `hostname` is used as given
/// after the same sanitising as MSGID (at most 255 characters).
#[must_use]
pub fn format_message(record: &OcsfRecord, facility: u8, hostname: &str) -> String {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(syslog_severity(record.severity_id));
    let timestamp = rfc3339_micros(record.time_us).unwrap_or_else(|| "-".to_owned());
    format!(
        "<{pri}>1 {timestamp} {} {APP_NAME} - {} [{SD_ID} idx=\"{}\"] {}",
        header_field(hostname, 255),
        header_field(&record.event_type, 32),
        record.index,
        record.to_json()
    )
}

/// RFC 5425 octet-counting frame: `MSG-LEN SP SYSLOG-MSG`.
#[must_use]
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the Unix epoch;
/// `None` outside years 0000 to 9999.
#[must_use]
pub fn rfc3339_micros(micros: i64) -> Option<String> {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    ))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe.saturating_add(era.saturating_mul(400)) + i64::from(month <= 2);
    (year, month, day)
}

use crate::clock::now_us;

/// One exporter's position and batching, without a loop: for one-shot
/// exports (`rampart audit export`) and for [`run_exporter`].
#[derive(Debug)]
pub struct Exporter {
    name: String,
    cursor: Cursor,
    batch_size: usize,
}

impl Exporter {
    /// The exporter `name`, with its cursor loaded from `state_dir`.
    ///
    /// # Errors
    /// As [`Cursor::load`].
    pub fn open(state_dir: &Path, name: &str) -> Result<Self, SinkError> {
        Ok(Self {
            name: name.to_owned(),
            cursor: Cursor::load(state_dir, name)?,
            batch_size: MAX_BATCH,
        })
    }

    /// Sets the batch size (clamped to 1 ..= [`MAX_BATCH`]).
    #[must_use]
    pub fn with_batch_size(mut self, entries: usize) -> Self {
        self.batch_size = entries.clamp(1, MAX_BATCH);
        self
    }

    /// The cursor.
    #[must_use]
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Sends the next batch from the cursor, then stores the cursor past
    /// it. Returns the number of entries sent, 0 when caught up.
    ///
    /// A cursor below `src.first_index()` (entries pruned before they were
    /// exported) moves up to it, and a cursor above `src.end_index()` (a
    /// log restored from an older backup) moves down to it; both are
    /// logged as warnings. A cursor never stored starts at
    /// `src.first_index()`.
    ///
    /// # Errors
    /// [`SinkError::Source`] if the entry at the cursor cannot be read
    /// (entries before a read error are sent first), the sink's error, or
    /// [`SinkError::Cursor`]. The cursor is unchanged by a failed batch.
    pub async fn export_batch<Src, S>(&mut self, src: &Src, sink: &mut S) -> Result<u64, SinkError>
    where
        Src: EntrySource,
        S: Sink,
    {
        let first = src.first_index();
        let end = src.end_index();
        let stored = self.cursor.next();
        let mut next = stored.unwrap_or(first);
        if next < first {
            tracing::warn!(
                target: TARGET,
                exporter = %self.name,
                cursor = next,
                first_index = first,
                lost = first - next,
                "audit entries were pruned before this exporter sent them; skipping forward"
            );
            next = first;
        }
        if next > end {
            tracing::warn!(
                target: TARGET,
                exporter = %self.name,
                cursor = next,
                end_index = end,
                "the audit log is shorter than the export cursor (restored from a backup?); moving the cursor back to its end"
            );
            next = end;
        }
        let (records, read_error) = read_batch(src, next, end, self.batch_size, now_us());
        if records.is_empty() {
            if let Some(e) = read_error {
                return Err(e);
            }
            if stored != Some(next) {
                self.cursor.store(next)?;
            }
            return Ok(0);
        }
        sink.send(&records).await?;
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        self.cursor.store(next.saturating_add(count))?;
        Ok(count)
    }

    /// Sends batches until caught up with `src` (or `shutdown`, checked
    /// between batches, is cancelled). Returns the number of entries sent.
    ///
    /// # Errors
    /// As [`Exporter::export_batch`]; batches sent before the error stay
    /// accounted for in the cursor.
    pub async fn export_available<Src, S>(
        &mut self,
        src: &Src,
        sink: &mut S,
        shutdown: Option<&CancellationToken>,
    ) -> Result<u64, SinkError>
    where
        Src: EntrySource,
        S: Sink,
    {
        let mut total = 0u64;
        loop {
            if shutdown.is_some_and(CancellationToken::is_cancelled) {
                return Ok(total);
            }
            let sent = self.export_batch(src, sink).await?;
            if sent == 0 {
                return Ok(total);
            }
            total = total.saturating_add(sent);
        }
    }
}

/// Reads up to `max` entries (and about [`MAX_BATCH_BYTES`]) from `next`,
/// mapped to records. A read error or a gap ends the batch; it is
/// returned alongside the entries read before it.
fn read_batch<Src: EntrySource>(
    src: &Src,
    next: u64,
    end: u64,
    max: usize,
    export_time_us: i64,
) -> (Vec<OcsfRecord>, Option<SinkError>) {
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut expected = next;
    if next >= end {
        return (records, None);
    }
    for item in src.entries_from(next) {
        match item {
            Ok((index, entry)) => {
                if index >= end {
                    break;
                }
                if index != expected {
                    let e = SinkError::Source(format!(
                        "the log reader returned entry {index} where {expected} was expected"
                    ));
                    return (records, Some(e));
                }
                let record = OcsfRecord::from_entry(&entry, index, export_time_us);
                if record.event_type == crate::ocsf::UNPARSABLE_TYPE {
                    tracing::warn!(target: TARGET, index, "audit entry is not a valid event; exported with its bytes in base64");
                }
                records.push(record);
                bytes = bytes.saturating_add(entry.len());
                expected = expected.saturating_add(1);
                if records.len() >= max || bytes >= MAX_BATCH_BYTES || expected >= end {
                    break;
                }
            }
            Err(e) => {
                return (
                    records,
                    Some(SinkError::Source(format!("entry {expected}: {e}"))),
                );
            }
        }
    }
    (records, None)
}

/// Timing of [`run_exporter_with`].
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Pause when caught up.
    pub poll: Duration,
    /// Entries per batch (1 ..= [`MAX_BATCH`]).
    pub batch_size: usize,
    /// First pause after an error; doubled after each further error.
    pub retry_initial: Duration,
    /// Longest pause after errors.
    pub retry_max: Duration,
}

impl ExportOptions {
    /// Options with `poll`, [`MAX_BATCH`] entries per batch and retries
    /// from 250 ms doubling up to 30 s.
    #[must_use]
    pub fn new(poll: Duration) -> Self {
        Self {
            poll,
            batch_size: MAX_BATCH,
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Capped exponential backoff.
#[derive(Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

/// Sleeps for `delay` unless `shutdown` comes first.
async fn pause(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

/// Runs the exporter `name` over the audit log in `source_dir` until
/// `shutdown` is cancelled: [`run_exporter_with`] opening a fresh
/// [`LogReader`] for every round (a reader sees the log as it was when
/// opened) with [`ExportOptions::new`]`(poll)`.
///
/// # Errors
/// [`SinkError::InvalidName`] only; every other error is logged and
/// retried.
pub async fn run_exporter<S: Sink>(
    source_dir: &Path,
    state_dir: &Path,
    name: &str,
    sink: S,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<u64, SinkError> {
    run_exporter_with(
        || LogReader::open(source_dir),
        state_dir,
        name,
        sink,
        ExportOptions::new(poll),
        shutdown,
    )
    .await
}

/// Runs the exporter `name` until `shutdown` is cancelled: opens a source
/// with `open`, sends everything from the cursor, drops the source, waits
/// `options.poll`, and again (a fresh source sees new entries). Errors
/// (opening, reading, sending, storing the cursor) are logged under
/// `rampart::audit` and retried after a capped exponential backoff. On
/// shutdown the sink is closed. Returns the number of entries sent.
///
/// # Errors
/// [`SinkError::InvalidName`] only, at once.
pub async fn run_exporter_with<Src, E, F, S>(
    mut open: F,
    state_dir: &Path,
    name: &str,
    mut sink: S,
    options: ExportOptions,
    shutdown: CancellationToken,
) -> Result<u64, SinkError>
where
    F: FnMut() -> Result<Src, E>,
    E: fmt::Display,
    Src: EntrySource,
    S: Sink,
{
    Cursor::path_for(state_dir, name)?;
    let mut backoff = Backoff::new(options.retry_initial, options.retry_max);
    let mut exporter: Option<Exporter> = None;
    let mut total = 0u64;
    while !shutdown.is_cancelled() {
        let ex = match exporter.as_mut() {
            Some(ex) => ex,
            None => match Exporter::open(state_dir, name) {
                Ok(ex) => exporter.insert(ex.with_batch_size(options.batch_size)),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::error!(target: TARGET, exporter = name, error = %e, retry_in = ?delay, "audit export cursor unusable");
                    pause(delay, &shutdown).await;
                    continue;
                }
            },
        };
        let src = match open() {
            Ok(src) => src,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(target: TARGET, exporter = name, error = %e, retry_in = ?delay, "cannot open the audit log for export");
                pause(delay, &shutdown).await;
                continue;
            }
        };
        let mut delay = options.poll;
        while !shutdown.is_cancelled() {
            match ex.export_batch(&src, &mut sink).await {
                Ok(0) => {
                    backoff.reset();
                    break;
                }
                Ok(sent) => {
                    total = total.saturating_add(sent);
                    backoff.reset();
                }
                Err(e) => {
                    delay = backoff.next_delay();
                    tracing::warn!(target: TARGET, exporter = name, error = %e, retry_in = ?delay, "audit export failed; retrying from the cursor");
                    if matches!(e, SinkError::Cursor { .. }) {
                        // Reload the cursor from disk before trying again.
                        exporter = None;
                    }
                    break;
                }
            }
        }
        drop(src);
        pause(delay, &shutdown).await;
    }
    sink.close().await;
    Ok(total)
}
