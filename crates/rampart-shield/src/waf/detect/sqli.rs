//! SQL injection, in the manner of libinjection: tokenize the value as SQL
//! three times (as if it stood bare in the query, as if it were inside
//! `'…'`, as if it were inside `"…"`), then ask whether the tokens after the
//! point where the value would leave its context form the start of an
//! injection. Words alone never match: `SELECT your best price`,
//! `O'Brien's`, `a < b and c > d` and `1 or 2 lots` tokenize to sequences
//! no injection has.
//!
//! The tokenizer knows strings (with `''` and `\'` escapes and `N'…'`
//! prefixes), numbers (including `0x…`), identifiers, back-quoted
//! identifiers, variables (`@x`, `@@version`), operators and the word
//! operators (`and`, `or`, `xor`, `like`, `rlike`, `regexp`, `div`, …), the
//! keywords that start or shape a statement, function calls (a name before
//! `(`), and the three comment forms; MySQL's executable comments `/*!…*/`
//! are read as code. Comments separate tokens like whitespace does, and a
//! comment that ends the input is noted on the token before it ("the rest
//! of the query is commented out").
//!
//! The input is the normalised value (decoded, NFKC, lower case).

/// Keywords the rules look at. Every other word is an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Union,
    Select,
    Insert,
    Update,
    Delete,
    Drop,
    Create,
    Alter,
    Truncate,
    Exec,
    Declare,
    Shutdown,
    Waitfor,
    From,
    Where,
    Into,
    Set,
    Order,
    Group,
    By,
    Having,
    Limit,
    Procedure,
    Outfile,
    All,
    Distinct,
    True,
    False,
    Null,
    Not,
    Exists,
    Case,
    Values,
    Grant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comment {
    /// `-- …`
    Dash,
    /// `# …`; `empty` when nothing but whitespace follows it.
    Hash { empty: bool },
    /// `/* … */`, or an unclosed `/*`.
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Str,
    Num,
    Word(&'a str),
    Kw(Kw),
    /// A name followed by `(`; the `(` is the next token.
    Func(&'a str),
    Var(&'a str),
    /// `and`, `or`, `xor`, `&&`, `||`.
    Logic,
    /// `=`, `<`, `>`, `<=`, `>=`, `<>`, `!=`, `<=>`, `like`, `rlike`,
    /// `regexp`, `is`, `in`, `between`, `sounds`.
    Cmp,
    /// `+ - * / % ^ | & ~ << >> := div mod`.
    Arith,
    LParen,
    RParen,
    Comma,
    Semi,
    Dot,
    Comment(Comment),
    Other,
}

/// A token of code, with the comment (if any) that follows it.
#[derive(Debug, Clone, Copy)]
struct T<'a> {
    tok: Tok<'a>,
    comment_after: Option<Comment>,
}

fn keyword(w: &str) -> Option<Tok<'static>> {
    let kw = match w {
        "and" | "or" | "xor" => return Some(Tok::Logic),
        "like" | "rlike" | "regexp" | "is" | "in" | "between" | "sounds" | "glob" | "match"
        | "similar" => return Some(Tok::Cmp),
        "div" | "mod" => return Some(Tok::Arith),
        "union" | "except" | "intersect" | "minus" => Kw::Union,
        "select" => Kw::Select,
        "insert" | "replace" => Kw::Insert,
        "update" => Kw::Update,
        "delete" => Kw::Delete,
        "drop" => Kw::Drop,
        "create" => Kw::Create,
        "alter" => Kw::Alter,
        "truncate" => Kw::Truncate,
        "exec" | "execute" => Kw::Exec,
        "declare" => Kw::Declare,
        "shutdown" => Kw::Shutdown,
        "waitfor" => Kw::Waitfor,
        "from" => Kw::From,
        "where" => Kw::Where,
        "into" => Kw::Into,
        "set" => Kw::Set,
        "order" => Kw::Order,
        "group" => Kw::Group,
        "by" => Kw::By,
        "having" => Kw::Having,
        "limit" => Kw::Limit,
        "procedure" => Kw::Procedure,
        "outfile" | "dumpfile" => Kw::Outfile,
        "all" => Kw::All,
        "distinct" | "distinctrow" => Kw::Distinct,
        "true" => Kw::True,
        "false" => Kw::False,
        "null" => Kw::Null,
        "not" => Kw::Not,
        "exists" => Kw::Exists,
        "case" => Kw::Case,
        "values" => Kw::Values,
        "grant" | "revoke" => Kw::Grant,
        _ => return None,
    };
    Some(Tok::Kw(kw))
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_space(b: u8) -> bool {
    b <= b' ' || b == 0x7f
}

/// Index of the first non-space byte at or after `i`, skipping `/* */`
/// comments too.
fn skip_space_and_block_comments(b: &[u8], mut i: usize) -> usize {
    loop {
        while b.get(i).is_some_and(|&c| is_space(c)) {
            i += 1;
        }
        if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'*') {
            match find(b, i + 2, b"*/") {
                Some(end) => i = end + 2,
                None => return b.len(),
            }
        } else {
            return i;
        }
    }
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The end (exclusive) of a string literal whose opening quote `q` is at
/// `start`, and whether it was closed.
fn string_end(b: &[u8], start: usize, q: u8) -> (usize, bool) {
    let mut i = start + 1;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (i + 1, true);
        }
        i += 1;
    }
    (b.len(), false)
}

/// Tokenizes `s`; with `quote`, as if `s` started inside a string closed by
/// that quote (everything up to its first occurrence is one string).
fn lex<'a>(s: &'a str, quote: Option<u8>, out: &mut Vec<Tok<'a>>) {
    let b = s.as_bytes();
    let mut i = 0;
    if let Some(q) = quote {
        let Some(end) = b.iter().position(|&c| c == q) else {
            return;
        };
        out.push(Tok::Str);
        i = end + 1;
    }
    while let Some(&c) = b.get(i) {
        if is_space(c) {
            i += 1;
            continue;
        }
        let next = b.get(i + 1).copied();
        match c {
            b'\'' | b'"' => {
                let (end, _) = string_end(b, i, c);
                out.push(Tok::Str);
                i = end;
            }
            b'`' => {
                let end = b
                    .get(i + 1..)
                    .and_then(|r| r.iter().position(|&x| x == b'`'))
                    .map_or(b.len(), |p| i + 1 + p + 1);
                out.push(Tok::Word(""));
                i = end;
            }
            b'#' => {
                let end = b
                    .get(i..)
                    .and_then(|r| r.iter().position(|&x| x == b'\n'))
                    .map_or(b.len(), |p| i + p);
                let empty = b
                    .get(i + 1..end)
                    .is_none_or(|r| r.iter().all(|&x| is_space(x)));
                out.push(Tok::Comment(Comment::Hash { empty }));
                i = end;
            }
            b'-' if next == Some(b'-') => {
                let end = b
                    .get(i..)
                    .and_then(|r| r.iter().position(|&x| x == b'\n'))
                    .map_or(b.len(), |p| i + p);
                out.push(Tok::Comment(Comment::Dash));
                i = end;
            }
            b'/' if next == Some(b'*') => {
                if b.get(i + 2) == Some(&b'!') {
                    // MySQL executable comment: its content is code.
                    i += 3;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                } else {
                    out.push(Tok::Comment(Comment::Block));
                    i = find(b, i + 2, b"*/").map_or(b.len(), |e| e + 2);
                }
            }
            b'*' if next == Some(b'/') => i += 2,
            b'(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            b',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            b';' => {
                out.push(Tok::Semi);
                i += 1;
            }
            b'.' if next.is_some_and(|d| d.is_ascii_digit()) => i = number(b, i, out),
            b'.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            b'0'..=b'9' => i = number(b, i, out),
            b'@' => {
                let mut j = i + 1;
                if b.get(j) == Some(&b'@') {
                    j += 1;
                }
                let start = j;
                while b.get(j).is_some_and(|&x| is_word_byte(x) || x == b'.') {
                    j += 1;
                }
                if j == start {
                    out.push(Tok::Other);
                } else {
                    out.push(Tok::Var(s.get(i..j).unwrap_or("@")));
                }
                i = j.max(i + 1);
            }
            b'=' => {
                out.push(Tok::Cmp);
                i += 1;
            }
            b'<' => {
                let (tok, len) = match (next, b.get(i + 2)) {
                    (Some(b'='), Some(b'>')) => (Tok::Cmp, 3),
                    (Some(b'=' | b'>'), _) => (Tok::Cmp, 2),
                    (Some(b'<'), _) => (Tok::Arith, 2),
                    _ => (Tok::Cmp, 1),
                };
                out.push(tok);
                i += len;
            }
            b'>' => {
                let (tok, len) = match next {
                    Some(b'=') => (Tok::Cmp, 2),
                    Some(b'>') => (Tok::Arith, 2),
                    _ => (Tok::Cmp, 1),
                };
                out.push(tok);
                i += len;
            }
            b'!' => {
                if matches!(next, Some(b'=' | b'<' | b'>')) {
                    out.push(Tok::Cmp);
                    i += 2;
                } else {
                    out.push(Tok::Kw(Kw::Not));
                    i += 1;
                }
            }
            b'|' | b'&' => {
                if next == Some(c) {
                    out.push(Tok::Logic);
                    i += 2;
                } else {
                    out.push(Tok::Arith);
                    i += 1;
                }
            }
            b':' if next == Some(b'=') => {
                out.push(Tok::Arith);
                i += 2;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'~' => {
                out.push(Tok::Arith);
                i += 1;
            }
            _ if is_word_byte(c) => i = word(s, i, out),
            _ => {
                out.push(Tok::Other);
                i += 1;
            }
        }
    }
}

fn number(b: &[u8], mut i: usize, out: &mut Vec<Tok<'_>>) -> usize {
    out.push(Tok::Num);
    if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'b')) {
        i += 2;
        while b.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        return i;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if b.get(i) == Some(&b'e') {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
    }
    i
}

fn word<'a>(s: &'a str, start: usize, out: &mut Vec<Tok<'a>>) -> usize {
    let b = s.as_bytes();
    let mut i = start;
    while b.get(i).is_some_and(|&x| is_word_byte(x)) {
        i += 1;
    }
    let w = s.get(start..i).unwrap_or("");
    // String literal prefixes: N'…', X'…', _utf8'…'.
    if b.get(i) == Some(&b'\'')
        && (matches!(w, "n" | "x" | "b" | "e" | "q") || (w.starts_with('_') && w.len() > 1))
    {
        return i;
    }
    if let Some(tok) = keyword(w) {
        out.push(tok);
        return i;
    }
    let after = skip_space_and_block_comments(b, i);
    if b.get(after) == Some(&b'(') {
        out.push(Tok::Func(w));
    } else {
        out.push(Tok::Word(w));
    }
    i
}

/// Drops comments, noting each on the token before it.
fn code<'a>(toks: &[Tok<'a>], out: &mut Vec<T<'a>>) {
    for &tok in toks {
        match tok {
            Tok::Comment(c) => {
                if let Some(last) = out.last_mut() {
                    if last.comment_after.is_none() {
                        last.comment_after = Some(c);
                    }
                }
            }
            _ => out.push(T {
                tok,
                comment_after: None,
            }),
        }
    }
}

/// Does this comment (on the last token of code) cut off the rest of the
/// query? A `#` followed by text is more likely a hashtag or "#1".
fn cuts(c: Option<Comment>) -> bool {
    matches!(
        c,
        Some(Comment::Dash | Comment::Block | Comment::Hash { empty: true })
    )
}

const DANGEROUS_FUNCTIONS: &[&str] = &[
    "sleep",
    "pg_sleep",
    "benchmark",
    "extractvalue",
    "updatexml",
    "load_file",
    "xp_cmdshell",
    "xp_dirtree",
    "xp_regread",
    "sys_eval",
    "sys_exec",
    "randomblob",
    "receive_message",
    "get_host_address",
    "get_host_name",
    "name_const",
    "gtid_subset",
    "geometrycollection",
    "multipoint",
    "polygon",
    "linestring",
    "dbms_lock",
    "make_set",
];

const CATALOGS: &[&str] = &[
    "information_schema",
    "sysobjects",
    "syscolumns",
    "sysdatabases",
    "sysusers",
    "msysobjects",
    "msysaccessobjects",
    "sqlite_master",
    "sqlite_schema",
    "pg_catalog",
    "pg_shadow",
    "pg_user",
    "all_tables",
    "user_tables",
    "dba_users",
    "all_users",
    "utl_http",
    "utl_inaddr",
    "dbms_pipe",
    "dbms_xmlgen",
    "ctxsys",
];

const PROCEDURES: &[&str] = &[
    "sp_executesql",
    "sp_oacreate",
    "sp_oamethod",
    "sp_configure",
    "sp_addlogin",
    "sp_addsrvrolemember",
    "sp_password",
    "sp_makewebtask",
];

fn at<'a>(t: &[T<'a>], i: usize) -> Option<Tok<'a>> {
    t.get(i).map(|x| x.tok)
}

/// Longest parenthesised group or select list followed, in tokens: the
/// rules look ahead only this far, so the whole check stays linear.
const LOOKAHEAD: usize = 256;

/// Index after the `)` matching the `(` at `i` (or the end, or
/// [`LOOKAHEAD`] tokens on).
fn after_parens(t: &[T<'_>], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while let Some(tok) = at(t, j) {
        if j - i >= LOOKAHEAD {
            return j;
        }
        match tok {
            Tok::LParen => depth += 1,
            Tok::RParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    t.len()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    /// A literal, a variable, a call or a parenthesised expression.
    Value,
    /// A bare identifier.
    Ident,
}

/// The operand starting at `i` and the index after it.
fn operand(t: &[T<'_>], mut i: usize) -> Option<(Operand, usize)> {
    // Unary operators.
    while matches!(at(t, i), Some(Tok::Arith | Tok::Kw(Kw::Not))) {
        i += 1;
    }
    match at(t, i)? {
        Tok::Str | Tok::Num | Tok::Var(_) | Tok::Kw(Kw::True | Kw::False | Kw::Null) => {
            Some((Operand::Value, i + 1))
        }
        Tok::Func(_) => Some((Operand::Value, after_parens(t, i + 1))),
        Tok::LParen | Tok::Kw(Kw::Select | Kw::Exists | Kw::Case) => {
            Some((Operand::Value, after_parens(t, i)))
        }
        Tok::Word(_) => {
            let mut j = i + 1;
            while at(t, j) == Some(Tok::Dot) && matches!(at(t, j + 1), Some(Tok::Word(_))) {
                j += 2;
            }
            Some((Operand::Ident, j))
        }
        _ => None,
    }
}

/// Is the boolean operand after a logic operator at `i` the kind an
/// injection appends (`1=1`, `'a'='a`, `sleep(5)`, `exists(select …)`)?
/// `strong` when the value has just closed a string.
fn condition(t: &[T<'_>], mut i: usize, strong: bool) -> bool {
    while matches!(at(t, i), Some(Tok::LParen | Tok::Kw(Kw::Not))) {
        i += 1;
    }
    match at(t, i) {
        Some(Tok::Kw(Kw::Select | Kw::Exists | Kw::Case)) | Some(Tok::Func(_)) => return true,
        _ => {}
    }
    let Some((lhs, j)) = operand(t, i) else {
        return false;
    };
    // `' or 'x` alone reads like prose about quoted words ("the 'or'
    // operator"); an injection compares it or cuts the query after it.
    let lone_string = at(t, i) == Some(Tok::Str) && j == i + 1;
    let ended = t.get(j.saturating_sub(1)).and_then(|x| x.comment_after);
    match at(t, j) {
        Some(Tok::Cmp | Tok::Arith) => {
            let Some((rhs, k)) = operand(t, j + 1) else {
                return false;
            };
            let ended = t.get(k.saturating_sub(1)).and_then(|x| x.comment_after);
            match (lhs, rhs) {
                (Operand::Value, Operand::Value) => true,
                (Operand::Ident, Operand::Ident) => strong && (cuts(ended) || k >= t.len()),
                _ => strong,
            }
        }
        None | Some(Tok::RParen | Tok::Semi) => {
            lhs == Operand::Value && ((strong && !lone_string) || cuts(ended))
        }
        _ => cuts(ended) && (strong || lhs == Operand::Value),
    }
}

/// Rules for what follows the point where the value leaves its context (a
/// closed string, a number, a word): `i` is the first token after it.
fn after_break(t: &[T<'_>], start: usize, strong: bool) -> Option<&'static str> {
    let mut i = start;
    while at(t, i) == Some(Tok::RParen) {
        i += 1;
    }
    let Some(tok) = at(t, i) else {
        let cut = i
            .checked_sub(1)
            .and_then(|p| t.get(p))
            .is_some_and(|x| cuts(x.comment_after));
        return (strong && cut).then_some("string closed, rest of query commented out");
    };
    let next = at(t, i + 1);
    match tok {
        Tok::Logic if condition(t, i + 1, strong) => Some("boolean condition appended"),
        Tok::Cmp | Tok::Arith if strong => match operand(t, i + 1) {
            Some((Operand::Value, _)) => Some("expression appended to a closed string"),
            _ => None,
        },
        Tok::Semi if strong && (next.is_none()) => Some("statement terminated after a string"),
        Tok::Kw(Kw::Order | Kw::Group) if next == Some(Tok::Kw(Kw::By)) => {
            let probe = t.get(i + 2).is_some_and(|x| match x.tok {
                Tok::Num => strong || cuts(x.comment_after) || i + 3 >= t.len(),
                Tok::Word(_) | Tok::Func(_) | Tok::LParen => strong,
                _ => false,
            });
            probe.then_some("order by probe")
        }
        Tok::Kw(Kw::Having | Kw::Where) if strong && condition(t, i + 1, true) => {
            Some("clause appended to a closed string")
        }
        Tok::Kw(Kw::Limit) if strong && next == Some(Tok::Num) => Some("limit clause"),
        Tok::Kw(Kw::Procedure) if strong => Some("procedure clause"),
        Tok::Kw(Kw::Waitfor) => Some("waitfor delay"),
        _ => None,
    }
}

fn is_statement_object(tok: Option<Tok<'_>>) -> bool {
    matches!(
        tok,
        Some(Tok::Word(
            "table"
                | "database"
                | "schema"
                | "user"
                | "login"
                | "procedure"
                | "function"
                | "view"
                | "index"
                | "trigger"
                | "column"
                | "role"
        ))
    ) || tok == Some(Tok::Kw(Kw::Procedure))
}

/// A `SELECT` list at `i` followed by `FROM`, or ended like an injection.
fn select_list(t: &[T<'_>], mut i: usize) -> bool {
    while matches!(at(t, i), Some(Tok::Kw(Kw::All | Kw::Distinct))) {
        i += 1;
    }
    let mut items = 0;
    let mut strong_item = false;
    let start = i;
    loop {
        if i - start >= LOOKAHEAD {
            return false;
        }
        match at(t, i) {
            Some(Tok::Arith)
                if matches!(at(t, i + 1), Some(Tok::Kw(Kw::From) | Tok::Comma) | None) =>
            {
                // `*`
                strong_item = true;
                i += 1;
            }
            _ => {
                let Some((kind, j)) = operand(t, i) else {
                    return false;
                };
                strong_item |= kind == Operand::Value;
                i = j;
                // `expr AS alias`
                if matches!(at(t, i), Some(Tok::Word("as")))
                    && matches!(at(t, i + 1), Some(Tok::Word(_)))
                {
                    i += 2;
                }
            }
        }
        items += 1;
        if at(t, i) == Some(Tok::Comma) {
            i += 1;
            continue;
        }
        break;
    }
    let ended = t.get(i.saturating_sub(1)).and_then(|x| x.comment_after);
    match at(t, i) {
        Some(Tok::Kw(Kw::From)) => {
            let target = at(t, i + 1);
            if !matches!(target, Some(Tok::Word(_) | Tok::LParen | Tok::Func(_))) {
                return false;
            }
            if strong_item || items > 1 {
                return true;
            }
            let mut k = i + 2;
            while at(t, k) == Some(Tok::Dot) {
                k += 2;
            }
            let ended = t.get(k.saturating_sub(1)).and_then(|x| x.comment_after);
            cuts(ended)
                || matches!(
                    at(t, k),
                    None | Some(
                        Tok::Kw(Kw::Where | Kw::Order | Kw::Group | Kw::Limit | Kw::Union)
                            | Tok::Semi
                            | Tok::RParen
                            | Tok::Comma
                    )
                )
        }
        None | Some(Tok::Semi | Tok::RParen | Tok::Kw(Kw::Union)) => {
            strong_item && (cuts(ended) || items > 1 || at(t, i).is_some())
        }
        _ => false,
    }
}

/// A statement after `;` (stacked queries).
fn stacked(t: &[T<'_>], i: usize) -> bool {
    let next = at(t, i + 1);
    match at(t, i) {
        Some(Tok::Kw(Kw::Select)) => select_list(t, i + 1),
        Some(Tok::Kw(Kw::Insert)) => next == Some(Tok::Kw(Kw::Into)),
        Some(Tok::Kw(Kw::Update)) => {
            matches!(next, Some(Tok::Word(_))) && at(t, i + 2) == Some(Tok::Kw(Kw::Set))
        }
        Some(Tok::Kw(Kw::Delete)) => next == Some(Tok::Kw(Kw::From)),
        Some(Tok::Kw(Kw::Drop | Kw::Create | Kw::Alter | Kw::Truncate)) => {
            is_statement_object(next)
        }
        Some(Tok::Kw(Kw::Exec)) => matches!(next, Some(Tok::Word(_) | Tok::Func(_) | Tok::LParen)),
        Some(Tok::Kw(Kw::Declare)) => matches!(next, Some(Tok::Var(_))),
        Some(Tok::Kw(Kw::Set)) => matches!(next, Some(Tok::Var(_))),
        Some(Tok::Kw(Kw::Shutdown)) => {
            next.is_none() || t.get(i).is_some_and(|x| cuts(x.comment_after))
        }
        Some(Tok::Kw(Kw::Waitfor | Kw::Grant)) => true,
        _ => false,
    }
}

/// Rules that hold wherever they occur.
fn anywhere(t: &[T<'_>]) -> Option<&'static str> {
    for (i, x) in t.iter().enumerate() {
        let next = at(t, i + 1);
        let hit = match x.tok {
            Tok::Kw(Kw::Union) => {
                let mut j = i + 1;
                while matches!(at(t, j), Some(Tok::Kw(Kw::All | Kw::Distinct) | Tok::LParen)) {
                    j += 1;
                }
                (at(t, j) == Some(Tok::Kw(Kw::Select))).then_some("union select")
            }
            Tok::Semi => stacked(t, i + 1).then_some("stacked statement"),
            Tok::Kw(Kw::Select) => select_list(t, i + 1).then_some("select statement"),
            Tok::Func(name) if DANGEROUS_FUNCTIONS.contains(&name) => {
                let prev = i.checked_sub(1).and_then(|p| at(t, p));
                matches!(
                    prev,
                    None | Some(
                        Tok::Logic
                            | Tok::Cmp
                            | Tok::Arith
                            | Tok::LParen
                            | Tok::Comma
                            | Tok::Semi
                            | Tok::Str
                            | Tok::Dot
                            | Tok::Kw(_)
                    )
                )
                .then_some("time or error function")
            }
            Tok::Var(v) if v.starts_with("@@") && v.len() > 2 => Some("system variable"),
            Tok::Word(w) | Tok::Func(w) if CATALOGS.contains(&w) => Some("system catalog"),
            Tok::Word(w) | Tok::Func(w) if w.starts_with("xp_") || PROCEDURES.contains(&w) => {
                Some("system procedure")
            }
            Tok::Kw(Kw::Waitfor) => {
                matches!(next, Some(Tok::Word("delay" | "time"))).then_some("waitfor delay")
            }
            Tok::Kw(Kw::Into) => {
                (next == Some(Tok::Kw(Kw::Outfile))).then_some("into outfile")
            }
            Tok::Kw(Kw::Insert) if next == Some(Tok::Kw(Kw::Into)) => {
                let mut j = i + 3;
                if at(t, j) == Some(Tok::LParen) {
                    j = after_parens(t, j);
                }
                (matches!(at(t, i + 2), Some(Tok::Word(_) | Tok::Func(_)))
                    && matches!(at(t, j), Some(Tok::Kw(Kw::Values | Kw::Select))))
                .then_some("insert statement")
            }
            Tok::Kw(Kw::Update) => (matches!(next, Some(Tok::Word(_)))
                && at(t, i + 2) == Some(Tok::Kw(Kw::Set))
                && matches!(at(t, i + 3), Some(Tok::Word(_)))
                && at(t, i + 4) == Some(Tok::Cmp))
            .then_some("update statement"),
            Tok::Kw(Kw::Delete) => (next == Some(Tok::Kw(Kw::From))
                && matches!(at(t, i + 2), Some(Tok::Word(_)))
                && at(t, i + 3) == Some(Tok::Kw(Kw::Where)))
            .then_some("delete statement"),
            Tok::Kw(Kw::Drop | Kw::Truncate | Kw::Alter) => {
                // `drop table users`, not `drop table tennis club dues`.
                let mut k = i + 3;
                while at(t, k) == Some(Tok::Dot) {
                    k += 2;
                }
                let object = t.get(k.saturating_sub(1));
                (is_statement_object(next)
                    && matches!(at(t, i + 2), Some(Tok::Word(_)))
                    && (object.is_some_and(|x| cuts(x.comment_after))
                        || matches!(at(t, k), None | Some(Tok::Semi | Tok::Comma | Tok::Kw(_)))))
                .then_some("schema statement")
            }
            Tok::Kw(Kw::Exec) => matches!(next, Some(Tok::Word(w) | Tok::Func(w)) if w.starts_with("xp_") || w.starts_with("sp_") || w == "master")
                .then_some("exec procedure"),
            _ => None,
        };
        if hit.is_some() {
            return hit;
        }
    }
    None
}

/// The reason the normalised value reads as SQL injection, if it does.
#[must_use]
pub fn detect(folded: &str) -> Option<&'static str> {
    let mut toks = Vec::with_capacity(16);
    let mut t = Vec::with_capacity(16);
    for quote in [None, Some(b'\''), Some(b'"')] {
        if let Some(q) = quote {
            if !folded.as_bytes().contains(&q) {
                continue;
            }
        }
        toks.clear();
        t.clear();
        lex(folded, quote, &mut toks);
        code(&toks, &mut t);
        let start = match (quote, t.first().map(|x| x.tok)) {
            (Some(_), _) => after_break(&t, 1, true),
            (None, Some(Tok::Num | Tok::Word(_))) => after_break(&t, 1, false),
            (None, Some(Tok::RParen)) => after_break(&t, 0, false),
            (None, Some(Tok::Arith)) if at(&t, 1) == Some(Tok::Num) => after_break(&t, 2, false),
            _ => None,
        };
        if let Some(reason) = start.or_else(|| anywhere(&t)) {
            return Some(reason);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn sqli(s: &str) {
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
            "' OR '1'='1",
            "' or 1=1--",
            "admin'--",
            "admin' #",
            "admin'/*",
            "') OR ('1'='1",
            "\" OR \"\"=\"",
            "1 OR 1=1",
            "1) or (1=1",
            "-1 OR 2>1",
            "1 AND SLEEP(5)",
            "' AND SLEEP(5) AND '1'='1",
            "1' ORDER BY 3--+",
            "' GROUP BY 1--",
            "' GROUP BY columnnames HAVING 1=1 --",
            "drop table users",
            "' HAVING 1=1 --",
            "-1' UNION SELECT 1,2,3--",
            "1 UNION ALL SELECT username, password FROM users",
            "UNION/**/SELECT",
            "/*!50000UNION*/ /*!50000SELECT*/ 1",
            "'; DROP TABLE users; --",
            "1; EXEC xp_cmdshell('dir')--",
            "'; WAITFOR DELAY '0:0:5'--",
            "' AND extractvalue(1,concat(0x7e,(select version())))--",
            "' || pg_sleep(5)--",
            "'+(select*from(select(sleep(20)))a)+'",
            "0'XOR(if(now()=sysdate(),sleep(15),0))XOR'Z",
            "' OR username IS NOT NULL --",
            "' OR EXISTS(SELECT 1)--",
            "%27%20or%20%271%27%3D%271",
            "%2527%2520or%25201%253D1--",
            "＇ ｏｒ １＝１－－",
            "select * from users",
            "SELECT password FROM users WHERE id=1",
            "1;select @@version",
            "' and 1=convert(int,@@version)--",
            "';shutdown--",
            "' or 'x'='x",
            "x' AND 1=(SELECT COUNT(*) FROM information_schema.tables)--",
            "'=0--+",
            "admin' or 1=1 limit 1--",
            "1' and 0x50=0x50--",
            "benchmark(10000000,md5(1))",
            "' into outfile '/tmp/x'--",
            "1 waitfor delay '0:0:10'--",
            "insert into users (name) values ('x')",
            "update users set admin=1 where id=2",
            "' or true--",
            "' or 1#",
            "1' where 1=1 --",
            "1' GROUP BY CONCAT(version(),FLOOR(RAND(0)*2)) HAVING MIN(0)#",
        ] {
            sqli(s);
        }
    }

    #[test]
    fn benign_text() {
        for s in [
            "Transfer to O'Brien's cold wallet",
            "SELECT your best price",
            "a < b and c > d",
            "5 > 3, so buy",
            "1 or 2 lots",
            "1 or 1",
            "Tom or Jerry",
            "Union Bank payout; select hedge later",
            "Please select one from the list",
            "drop-off at 5pm or later",
            "It's 5 o'clock somewhere",
            "Rock 'n' roll fund",
            "He said \"buy\" or \"hold\"",
            "Don't sell below 60k; buy dips",
            "I'm long; you're short",
            "Order by Friday, please",
            "Sell order by 3 pm",
            "Buy limit 5 BTC",
            "Having fun trading",
            "price >= 65000 or better",
            "Delete from watchlist",
            "Drop table tennis club dues",
            "Update wallet set to cold",
            "Let's meet at 5 or 6",
            "Ask O'Neil -- he knows",
            "the 'or' operator",
            "Use 'limit' or 'market' orders",
            "The traders' #1 pick",
            "Q3 P&L -- rebalance",
            "Meeting @ 10:00; drop by",
            "x = y + 1",
            "Note: 1=1 parity",
            "BTC-USD",
            "65000.00",
            "abc-123",
            "I need sleep (lots of it)",
            "Zoë Müller 株式",
            "email: jane.doe+trading@example.com",
            "see https://example.com/report?id=42&lang=en",
        ] {
            clean(s);
        }
    }
}
