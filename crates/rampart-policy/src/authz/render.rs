//! A key's settings as literal per-key Cedar policies (for explanations).

use std::fmt::Write as _;

use super::KeySettings;

/// A Cedar string literal.
fn lit(s: &str) -> String {
    format!("\"{}\"", s.escape_default())
}

fn set(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| lit(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The per-key policies equivalent to the generic key-settings policies
/// (`keys.cedar`) for this key: what `rampart policy explain` prints so an
/// operator can read a key's effective restrictions as Cedar. The text
/// parses and validates against the schema; the gateway never loads it
/// (see the module documentation for why).
pub fn render_key_policies(key: &KeySettings) -> String {
    let principal = format!("principal == Rampart::ApiKey::{}", lit(&key.key_id));
    let account = format!("Rampart::Account::{}", lit(&key.account_id));
    let id = |what: &str| lit(&format!("key:{}.{what}", key.key_id));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Key {} of account {}: its settings as per-key policies\n// (equivalent to keys.cedar for this key).",
        lit(&key.key_id),
        lit(&key.account_id)
    );

    match key.expires_at_ms {
        Some(ms) => {
            let _ = writeln!(
                out,
                "\n@id({})\n@code(\"KEY_EXPIRED\")\nforbid ({principal}, action, resource)\nwhen {{ context.now >= {} }};",
                id("expired"),
                ms.div_euclid(1000)
            );
        }
        None => out.push_str("\n// never expires\n"),
    }

    if key.nets.is_empty() {
        out.push_str("\n// any source address\n");
    } else {
        let ranges: Vec<String> = key
            .nets
            .iter()
            .map(|n| format!("context.source_ip.isInRange(ip(\"{}\"))", n.trunc()))
            .collect();
        let _ = writeln!(
            out,
            "\n@id({})\n@code(\"IP_NOT_ALLOWED\")\nforbid ({principal}, action, resource)\nunless {{ {} }};",
            id("ip"),
            ranges.join(" || ")
        );
    }

    let scopes = if key.scopes.is_empty() {
        "context.required_scope == \"public\"".to_string()
    } else {
        format!(
            "context.required_scope == \"public\" || {}.contains(context.required_scope)",
            set(&key.scopes)
        )
    };
    let _ = writeln!(
        out,
        "\n@id({})\n@code(\"SCOPE_MISSING\")\nforbid ({principal}, action, resource)\nunless {{ {scopes} }};",
        id("scope")
    );

    if key.read_only {
        let _ = writeln!(
            out,
            "\n@id({})\n@code(\"SCOPE_MISSING\")\nforbid ({principal}, action, resource)\nunless {{ action in [Rampart::Action::\"public\", Rampart::Action::\"read\"] }};",
            id("read_only")
        );
    }

    for (what, attr, list) in [
        ("instrument", "symbol", &key.instruments),
        ("product", "product", &key.products),
    ] {
        if list.is_empty() {
            let _ = writeln!(out, "\n// any {what}");
            continue;
        }
        let _ = writeln!(
            out,
            "\n@id({})\nforbid ({principal}, action, resource is Rampart::Instrument)\nunless {{ action in Rampart::Action::\"public\" || {}.contains(resource.{attr}) }};",
            id(what),
            set(list)
        );
    }

    let _ = writeln!(
        out,
        "\n@id({})\nforbid ({principal}, action, resource)\nunless {{ context.account in {account} && (resource is Rampart::Instrument || resource in {account}) }};",
        id("account")
    );
    let _ = writeln!(
        out,
        "\n// The address book is the account's, not the key's.\n@id({})\nforbid ({principal}, action in Rampart::Action::\"withdraw\", resource)\nunless {{ context has withdrawal && principal.account.withdrawal_addresses.contains(context.withdrawal.address) }};",
        id("withdrawal_address")
    );
    out
}
