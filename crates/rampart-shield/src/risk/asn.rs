//! [`AsnTable`]: IP prefix → (ASN, country), longest-prefix match.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

/// Most parse problems reported at once.
const MAX_PROBLEMS: usize = 20;

/// What an [`AsnTable`] knows about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsnInfo {
    /// The autonomous system number.
    pub asn: u32,
    /// ISO 3166-1 alpha-2 country code, upper case; `ZZ` when unknown.
    pub country: [u8; 2],
}

impl AsnInfo {
    /// The country code as text (`"ZZ"` when unknown).
    #[must_use]
    pub fn country_str(&self) -> &str {
        std::str::from_utf8(&self.country).unwrap_or("ZZ")
    }

    /// Whether the country is known (not `ZZ`).
    #[must_use]
    pub fn has_country(&self) -> bool {
        self.country != *b"ZZ"
    }
}

impl fmt::Display for AsnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AS{} ({})", self.asn, self.country_str())
    }
}

/// Why an ASN table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AsnTableError {
    /// The file could not be read.
    #[error("cannot read ASN table `{path}`: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Some lines are invalid; the first few, with line numbers.
    #[error("invalid ASN table: {}", .problems.join("; "))]
    Parse {
        /// `line N: what is wrong`, at most 20 (then a count of the rest).
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u128,
    end: u128,
    len: u8,
    info: AsnInfo,
    /// Index of the closest enclosing entry.
    parent: Option<usize>,
}

impl Entry {
    fn contains(&self, a: u128) -> bool {
        self.start <= a && a <= self.end
    }
}

/// A longest-prefix-match table from IP prefixes to [`AsnInfo`], IPv4 and
/// IPv6, built from CSV.
///
/// # Format
///
/// UTF-8 text, one `prefix,asn,country` record per line, e.g.
///
/// ```text
/// # prefix,asn,country
/// 203.0.113.0/24,64500,NL
/// 2001:db8::/32,AS64501,us
/// 198.51.100.7,64502,
/// ```
///
/// - `prefix`: IPv4 or IPv6 CIDR with no host bits set (a bare address is
///   a /32 or /128). Prefixes may nest; the longest match wins. The same
///   prefix twice is an error.
/// - `asn`: decimal, optionally prefixed `AS`.
/// - `country`: ISO 3166-1 alpha-2, any case; empty, `--` or `ZZ` for
///   unknown.
/// - Fields are trimmed; blank lines and lines starting with `#` are
///   ignored, and so is a first line `prefix,asn,country`.
///
/// Lookups canonicalise IPv4-mapped IPv6 addresses to IPv4 first, so
/// IPv4 data belongs in IPv4 prefixes. Memory is about 48 bytes a prefix;
/// a lookup is one binary search plus, rarely, a walk up enclosing
/// prefixes.
///
/// MaxMind MMDB files are not read: the `maxminddb` crate is ISC-licensed
/// (allowed) but would be a new dependency, and exporting CSV from any
/// source is one command; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct AsnTable {
    v4: Vec<Entry>,
    v6: Vec<Entry>,
}

impl AsnTable {
    /// Parses a table from CSV text (format above).
    ///
    /// # Errors
    ///
    /// [`AsnTableError::Parse`] listing invalid lines.
    pub fn from_csv_str(text: &str) -> Result<Self, AsnTableError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut problems = Vec::new();
        let mut extra = 0_usize;
        let mut problem = |line: usize, msg: String| {
            if problems.len() < MAX_PROBLEMS {
                problems.push(format!("line {line}: {msg}"));
            } else {
                extra += 1;
            }
        };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if n == 1 && line.eq_ignore_ascii_case("prefix,asn,country") {
                continue;
            }
            match parse_line(line) {
                Ok((net, info)) => {
                    let (start, end) = range(&net);
                    let e = Entry {
                        start,
                        end,
                        len: net.prefix_len(),
                        info,
                        parent: None,
                    };
                    match net {
                        IpNet::V4(_) => v4.push((n, e)),
                        IpNet::V6(_) => v6.push((n, e)),
                    }
                }
                Err(msg) => problem(n, msg),
            }
        }
        let v4 = build(v4, &mut problem);
        let v6 = build(v6, &mut problem);
        if extra > 0 {
            problems.push(format!("and {extra} more"));
        }
        if problems.is_empty() {
            Ok(Self { v4, v6 })
        } else {
            Err(AsnTableError::Parse { problems })
        }
    }

    /// Reads and parses a CSV file (format above). Meant for start-up: it
    /// reads the whole file synchronously.
    ///
    /// # Errors
    ///
    /// [`AsnTableError::Io`] if the file cannot be read,
    /// [`AsnTableError::Parse`] listing invalid lines.
    pub fn from_csv_file(path: impl AsRef<Path>) -> Result<Self, AsnTableError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AsnTableError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_csv_str(&text)
    }

    /// The longest prefix holding `ip`, with its data.
    #[must_use]
    pub fn lookup_prefix(&self, ip: IpAddr) -> Option<(IpNet, AsnInfo)> {
        let ip = ip.to_canonical();
        let (entries, a) = match ip {
            IpAddr::V4(v) => (&self.v4, u128::from(u32::from(v))),
            IpAddr::V6(v) => (&self.v6, u128::from(v)),
        };
        // The last entry starting at or before `a`; if it does not hold
        // `a`, only its ancestors can (prefixes nest or are disjoint).
        let mut idx = entries.partition_point(|e| e.start <= a).checked_sub(1)?;
        loop {
            let e = entries.get(idx)?;
            if e.contains(a) {
                let net = match ip {
                    IpAddr::V4(_) => u32::try_from(e.start)
                        .ok()
                        .and_then(|s| ipnet::Ipv4Net::new(s.into(), e.len).ok())
                        .map(IpNet::V4),
                    IpAddr::V6(_) => ipnet::Ipv6Net::new(e.start.into(), e.len)
                        .ok()
                        .map(IpNet::V6),
                }?;
                return Some((net, e.info));
            }
            idx = e.parent?;
        }
    }

    /// The data of the longest prefix holding `ip`.
    #[must_use]
    pub fn lookup(&self, ip: IpAddr) -> Option<AsnInfo> {
        self.lookup_prefix(ip).map(|(_, info)| info)
    }

    /// Number of prefixes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table has no prefix.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_line(line: &str) -> Result<(IpNet, AsnInfo), String> {
    let mut fields = line.split(',').map(str::trim);
    let (Some(prefix), Some(asn), country, None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("expected `prefix,asn,country`".into());
    };
    let net: IpNet = match prefix.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => prefix
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{prefix}` is not an IP prefix"))?,
    };
    if net.trunc() != net {
        return Err(format!(
            "`{prefix}` has host bits set (did you mean `{}`?)",
            net.trunc()
        ));
    }
    let digits = asn
        .strip_prefix("AS")
        .or_else(|| asn.strip_prefix("as"))
        .unwrap_or(asn);
    let asn = digits
        .parse::<u32>()
        .map_err(|_| format!("`{asn}` is not an AS number"))?;
    let country = match country.unwrap_or("") {
        "" | "--" => *b"ZZ",
        c => match c.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                [a.to_ascii_uppercase(), b.to_ascii_uppercase()]
            }
            _ => return Err(format!("`{c}` is not a two-letter country code")),
        },
    };
    Ok((net, AsnInfo { asn, country }))
}

fn range(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Sorts entries (start ascending, shorter first), rejects duplicates and
/// links each entry to its closest enclosing one.
fn build(mut entries: Vec<(usize, Entry)>, problem: &mut impl FnMut(usize, String)) -> Vec<Entry> {
    entries.sort_by_key(|(_, e)| (e.start, e.len));
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut stack: Vec<usize> = Vec::new();
    for (line, mut e) in entries {
        if let Some(prev) = out.last() {
            if prev.start == e.start && prev.len == e.len {
                problem(line, "duplicate prefix".into());
                continue;
            }
        }
        while let Some(&top) = stack.last() {
            if out.get(top).is_some_and(|t| t.contains(e.start)) {
                break;
            }
            stack.pop();
        }
        e.parent = stack.last().copied();
        stack.push(out.len());
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_disjoint() {
        let t = AsnTable::from_csv_str(
            "prefix,asn,country\n10.0.0.0/8,1,NL\n10.1.0.0/16,2,DE\n10.1.2.0/24,3,FR\n10.2.0.0/16,4,\n",
        )
        .unwrap();
        let asn = |s: &str| t.lookup(s.parse().unwrap()).map(|i| i.asn);
        assert_eq!(asn("10.1.2.3"), Some(3));
        assert_eq!(asn("10.1.3.3"), Some(2));
        // After the /24 and the /16 in address order, back up to the /8.
        assert_eq!(asn("10.1.255.255"), Some(2));
        assert_eq!(asn("10.3.0.0"), Some(1));
        assert_eq!(asn("10.2.0.1"), Some(4));
        assert_eq!(asn("11.0.0.0"), None);
        assert_eq!(asn("9.255.255.255"), None);
        assert!(!t.lookup("10.2.0.1".parse().unwrap()).unwrap().has_country());
    }
}
