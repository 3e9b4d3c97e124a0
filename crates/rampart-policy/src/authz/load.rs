//! Loading: schema (shipped + generated actions), instrument catalogue,
//! policy sources; strict validation; every problem collected with its
//! source, line and column.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, RestrictedExpression,
    Schema, SchemaFragment, ValidationMode, Validator,
};
use miette::Diagnostic;

use super::prepare::{share, CoreEntity};
use super::{
    ActionDef, ActionInfo, AuthzConfig, DenyCode, DEFAULT_POLICIES, DEFAULT_POLICIES_SOURCE,
    KEY_POLICIES, KEY_POLICIES_SOURCE, SCHEMA,
};

/// Source name used for problems in the schema and generated actions.
const SCHEMA_SOURCE: &str = "schema";
/// Source name used for problems in the instrument catalogue.
const CATALOGUE_SOURCE: &str = "instruments";

/// Built-in groups an [`ActionDef::scope`] maps to when `groups` is empty.
const SCOPE_GROUPS: [&str; 4] = ["public", "read", "trade", "withdraw"];
/// Products an instrument may have.
pub(crate) const PRODUCTS: [&str; 3] = ["spot", "perp", "option"];

/// One problem found while loading policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// Source name (an operator file, `keys.cedar`, `defaults.cedar`,
    /// `schema`, `instruments`).
    pub source: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.source, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.source, self.message),
            _ => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// Every problem found in a policy configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The problems, in source order.
    pub issues: Vec<PolicyIssue>,
}

impl PolicyError {
    pub(crate) fn single(source: &str, message: String) -> Self {
        Self {
            issues: vec![PolicyIssue {
                source: source.to_string(),
                line: None,
                column: None,
                message,
            }],
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(f, "{n} policy error{}", if n == 1 { "" } else { "s" })?;
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

/// A parsed policy with its provenance.
#[derive(Debug, Clone)]
pub(crate) struct LoadedPolicy {
    pub(crate) policy: Policy,
    pub(crate) source: Arc<str>,
    pub(crate) code: Option<DenyCode>,
    pub(crate) text: String,
}

/// An instrument of the catalogue: its entity and product.
#[derive(Debug, Clone)]
pub(crate) struct CatalogueEntry {
    pub(crate) uid: EntityUid,
    pub(crate) entity: Arc<CoreEntity>,
    /// One of [`PRODUCTS`].
    pub(crate) product: &'static str,
}

/// The result of a successful load.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) schema_text: String,
    pub(crate) policies: Vec<LoadedPolicy>,
    pub(crate) actions: HashMap<String, ActionInfo>,
    /// Concrete actions by index, with their ancestor groups.
    pub(crate) action_order: Vec<ActionScope>,
    pub(crate) instruments: HashMap<String, CatalogueEntry>,
    pub(crate) types: Types,
}

#[derive(Default)]
struct Issues(Vec<PolicyIssue>);

impl Issues {
    fn at(&mut self, source: &str, text: Option<&str>, offset: Option<usize>, message: String) {
        let (line, column) = match (text, offset) {
            (Some(t), Some(o)) => {
                let (l, c) = line_col(t, o);
                (Some(l), Some(c))
            }
            _ => (None, None),
        };
        self.0.push(PolicyIssue {
            source: source.to_string(),
            line,
            column,
            message,
        });
    }

    fn plain(&mut self, source: &str, message: String) {
        self.at(source, None, None, message);
    }

    /// One issue per labelled span of a Cedar diagnostic (or one without a
    /// position when it has none).
    fn diagnostic(&mut self, source: &str, text: &str, d: &dyn Diagnostic, message: String) {
        let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset());
        let message = match d.help() {
            Some(h) => format!("{message} (help: {h})"),
            None => message,
        };
        self.at(source, Some(text), offset, message);
    }
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let before = text.get(..end).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The schema's entity type names and the extension constructors' names,
/// parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    pub(crate) api_key: EntityTypeName,
    pub(crate) account: EntityTypeName,
    pub(crate) instrument: EntityTypeName,
    ip: cedar_policy_core::ast::Name,
    decimal: cedar_policy_core::ast::Name,
}

impl Types {
    pub(crate) fn new() -> Result<Self, String> {
        let t = |name: &str| {
            EntityTypeName::from_str(&format!("Rampart::{name}"))
                .map_err(|e| format!("entity type `{name}`: {e}"))
        };
        let f = |name: &str| {
            cedar_policy_core::ast::Name::parse_unqualified_name(name)
                .map_err(|e| format!("extension function `{name}`: {e}"))
        };
        Ok(Self {
            api_key: t("ApiKey")?,
            account: t("Account")?,
            instrument: t("Instrument")?,
            ip: f("ip")?,
            decimal: f("decimal")?,
        })
    }

    /// `ip("…")`, as `RestrictedExpression::new_ip` builds it but without
    /// parsing the name `ip` again (the argument is checked on evaluation).
    pub(crate) fn ip(&self, src: &str) -> RestrictedExpression {
        self.call(&self.ip, src)
    }

    /// `decimal("…")`, likewise.
    pub(crate) fn decimal(&self, src: &str) -> RestrictedExpression {
        self.call(&self.decimal, src)
    }

    fn call(&self, name: &cedar_policy_core::ast::Name, src: &str) -> RestrictedExpression {
        use cedar_policy_core::ast::RestrictedExpr;
        RestrictedExpression::from(RestrictedExpr::call_extension_fn(
            name.clone(),
            [RestrictedExpr::val(src)],
        ))
    }
}

pub(crate) fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// The built-in actions' groups, read from the shipped schema.
fn builtin_groups(schema: &Schema) -> HashMap<String, BTreeSet<String>> {
    let mut out = HashMap::new();
    let Ok(entities) = schema.action_entities() else {
        return out;
    };
    for a in schema.actions() {
        let groups = entities
            .ancestors(a)
            .map(|it| it.map(|g| g.id().unescaped().to_string()).collect())
            .unwrap_or_default();
        out.insert(a.id().unescaped().to_string(), groups);
    }
    out
}

/// The generated fragment for `defs` that are not built in, or the issues.
fn generate_actions(defs: &[ActionDef], issues: &mut Issues) -> String {
    let base = match Schema::from_cedarschema_str(SCHEMA) {
        Ok((s, _)) => s,
        Err(e) => {
            issues.plain(SCHEMA_SOURCE, format!("shipped schema: {e}"));
            return String::new();
        }
    };
    let builtin = builtin_groups(&base);
    let mut seen = HashSet::new();
    let mut new_groups = BTreeSet::new();
    let mut lines = Vec::new();
    for d in defs {
        if !valid_name(&d.name) {
            issues.plain(
                SCHEMA_SOURCE,
                format!(
                    "action `{}`: a name is ASCII letters, digits and `_`",
                    d.name
                ),
            );
            continue;
        }
        if !seen.insert(d.name.clone()) {
            issues.plain(
                SCHEMA_SOURCE,
                format!("action `{}` is defined twice", d.name),
            );
            continue;
        }
        let mut groups: BTreeSet<String> = d.groups.iter().cloned().collect();
        if groups.is_empty() && SCOPE_GROUPS.contains(&d.scope.as_str()) {
            groups.insert(d.scope.clone());
        }
        if let Some(bad) = groups.iter().find(|g| !valid_name(g)) {
            issues.plain(
                SCHEMA_SOURCE,
                format!("action `{}`: group `{bad}` is not a valid name", d.name),
            );
            continue;
        }
        if let Some(have) = builtin.get(&d.name) {
            let is_group = have.is_empty() && !is_concrete(&base, &d.name);
            if is_group {
                issues.plain(
                    SCHEMA_SOURCE,
                    format!("action `{}` is an action group", d.name),
                );
            } else if let Some(extra) = groups.iter().find(|g| !have.contains(*g)) {
                issues.plain(
                    SCHEMA_SOURCE,
                    format!(
                        "built-in action `{}` is not in group `{extra}` (its groups: {})",
                        d.name,
                        have.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            continue;
        }
        for g in &groups {
            if !builtin.contains_key(g) {
                new_groups.insert(g.clone());
            } else if is_concrete(&base, g) {
                issues.plain(
                    SCHEMA_SOURCE,
                    format!("action `{}`: `{g}` is an action, not a group", d.name),
                );
            }
        }
        let parents = groups
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let member = if parents.is_empty() {
            String::new()
        } else {
            format!(" in [{parents}]")
        };
        lines.push(format!(
            "  action \"{}\"{member}\n    appliesTo {{ principal: [ApiKey], resource: [Account, Instrument], context: RequestContext }};",
            d.name
        ));
    }
    for g in &new_groups {
        if seen.contains(g) {
            issues.plain(
                SCHEMA_SOURCE,
                format!("`{g}` is used both as an action and as a group"),
            );
        }
    }
    if lines.is_empty() && new_groups.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n// Generated from the gateway's routes.\nnamespace Rampart {\n");
    for g in &new_groups {
        out.push_str(&format!("  action \"{g}\";\n"));
    }
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

fn is_concrete(schema: &Schema, name: &str) -> bool {
    schema
        .actions()
        .find(|a| a.id().unescaped() == name)
        .and_then(|a| {
            schema
                .principals_for_action(a)
                .map(|mut p| p.next().is_some())
        })
        .unwrap_or(false)
}

fn build_schema(cfg: &AuthzConfig, issues: &mut Issues) -> Option<(Schema, String)> {
    let generated = generate_actions(&cfg.actions, issues);
    let base = match SchemaFragment::from_cedarschema_str(SCHEMA) {
        Ok((f, _warnings)) => f,
        Err(e) => {
            issues.diagnostic(SCHEMA_SOURCE, SCHEMA, &e, e.to_string());
            return None;
        }
    };
    let mut fragments = vec![base];
    if !generated.is_empty() {
        match SchemaFragment::from_cedarschema_str(&generated) {
            Ok((f, _warnings)) => fragments.push(f),
            Err(e) => {
                issues.diagnostic(SCHEMA_SOURCE, &generated, &e, e.to_string());
                return None;
            }
        }
    }
    match Schema::from_schema_fragments(fragments) {
        Ok(s) => Some((s, format!("{SCHEMA}{generated}"))),
        Err(e) => {
            issues.plain(SCHEMA_SOURCE, e.to_string());
            None
        }
    }
}

/// A concrete action as the index sees it.
#[derive(Debug, Clone)]
pub(crate) struct ActionScope {
    pub(crate) uid: EntityUid,
    /// Its groups, transitively.
    pub(crate) groups: HashSet<EntityUid>,
    /// The principal and resource types it applies to.
    pub(crate) principals: Vec<EntityTypeName>,
    pub(crate) resources: Vec<EntityTypeName>,
}

fn build_actions(schema: &Schema) -> (HashMap<String, ActionInfo>, Vec<ActionScope>) {
    let mut map = HashMap::new();
    let mut order = Vec::new();
    let Ok(entities) = schema.action_entities() else {
        return (map, order);
    };
    let mut concrete: Vec<&EntityUid> = schema
        .actions()
        .filter(|a| {
            schema
                .principals_for_action(a)
                .is_some_and(|mut p| p.next().is_some())
        })
        .collect();
    concrete.sort_by_key(|a| a.id().unescaped().to_string());
    for a in concrete {
        let Some(entity) = entities.get(a) else {
            continue;
        };
        let ancestors: HashSet<EntityUid> = entities
            .ancestors(a)
            .map(|it| it.cloned().collect())
            .unwrap_or_default();
        let index = order.len();
        let groups = super::native::Groups::of(&ancestors);
        let mut group_ids: Vec<String> = ancestors
            .iter()
            .map(|g| g.id().unescaped().to_string())
            .collect();
        group_ids.sort();
        order.push(ActionScope {
            uid: a.clone(),
            groups: ancestors,
            principals: schema
                .principals_for_action(a)
                .map(|it| it.cloned().collect())
                .unwrap_or_default(),
            resources: schema
                .resources_for_action(a)
                .map(|it| it.cloned().collect())
                .unwrap_or_default(),
        });
        map.insert(
            a.id().unescaped().to_string(),
            ActionInfo {
                index,
                uid: a.clone(),
                entity: share(entity),
                groups,
                group_ids,
            },
        );
    }
    (map, order)
}

fn build_instruments(
    cfg: &AuthzConfig,
    ty: &EntityTypeName,
    issues: &mut Issues,
) -> HashMap<String, CatalogueEntry> {
    let mut out = HashMap::new();
    for i in &cfg.instruments {
        if i.symbol.is_empty() {
            issues.plain(CATALOGUE_SOURCE, "an instrument symbol is empty".into());
            continue;
        }
        let Some(product) = PRODUCTS.iter().copied().find(|p| *p == i.product) else {
            issues.plain(
                CATALOGUE_SOURCE,
                format!(
                    "instrument `{}`: product `{}` is not one of spot, perp, option",
                    i.symbol, i.product
                ),
            );
            continue;
        };
        if out.contains_key(&i.symbol) {
            issues.plain(
                CATALOGUE_SOURCE,
                format!("instrument `{}` is listed twice", i.symbol),
            );
            continue;
        }
        let u = uid(ty, &i.symbol);
        let attrs = HashMap::from([
            (
                "symbol".to_string(),
                RestrictedExpression::new_string(i.symbol.clone()),
            ),
            (
                "product".to_string(),
                RestrictedExpression::new_string(i.product.clone()),
            ),
        ]);
        match Entity::new(u.clone(), attrs, HashSet::new()) {
            Ok(e) => {
                out.insert(
                    i.symbol.clone(),
                    CatalogueEntry {
                        uid: u,
                        entity: share(&e),
                        product,
                    },
                );
            }
            Err(e) => issues.plain(CATALOGUE_SOURCE, format!("instrument `{}`: {e}", i.symbol)),
        }
    }
    out
}

/// Numeric suffix of Cedar's default ids (`policy12` → 12), for source order.
fn default_index(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Parses one source; pushes its policies (re-identified) or its issues.
fn parse_source(
    name: &str,
    text: &str,
    ids: &mut HashMap<String, Arc<str>>,
    out: &mut Vec<(LoadedPolicy, Arc<str>, usize)>,
    issues: &mut Issues,
) {
    let source: Arc<str> = Arc::from(name);
    let text_arc: Arc<str> = Arc::from(text);
    let set = match PolicySet::from_str(text) {
        Ok(s) => s,
        Err(errs) => {
            for e in errs.iter() {
                issues.diagnostic(name, text, e, e.to_string());
            }
            return;
        }
    };
    let mut cursor = 0usize;
    let mut templates: Vec<_> = set.templates().collect();
    templates.sort_by_key(|t| default_index(t.id()));
    for t in templates {
        let offset = text.find(&t.to_cedar()).unwrap_or(0);
        issues.at(
            name,
            Some(text),
            Some(offset),
            "policy templates (`?principal`, `?resource`) are not supported".into(),
        );
    }
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| default_index(p.id()));
    for (n, p) in policies.into_iter().enumerate() {
        let ptext = p.to_cedar().unwrap_or_default();
        let offset = text
            .get(cursor..)
            .and_then(|rest| rest.find(&ptext))
            .map_or(cursor, |i| cursor + i);
        cursor = offset + ptext.len();
        let id = match p.annotation("id") {
            Some("") => {
                issues.at(name, Some(text), Some(offset), "`@id` is empty".into());
                continue;
            }
            Some(id) => id.to_string(),
            None => format!("{name}:policy{n}"),
        };
        let code = match p.annotation("code") {
            None => None,
            Some(c) => match DenyCode::parse(c) {
                None => {
                    issues.at(
                        name,
                        Some(text),
                        Some(offset),
                        format!(
                            "policy `{id}`: `@code(\"{c}\")` is not one of {}",
                            DenyCode::ALL.map(DenyCode::as_str).join(", ")
                        ),
                    );
                    continue;
                }
                Some(_) if p.effect() == cedar_policy::Effect::Permit => {
                    issues.at(
                        name,
                        Some(text),
                        Some(offset),
                        format!("policy `{id}`: `@code` only applies to forbid policies"),
                    );
                    continue;
                }
                Some(c) => Some(c),
            },
        };
        if let Some(first) = ids.get(&id) {
            issues.at(
                name,
                Some(text),
                Some(offset),
                format!("policy id `{id}` is already used in `{first}`"),
            );
            continue;
        }
        ids.insert(id.clone(), source.clone());
        let policy = p.new_id(PolicyId::new(&id));
        out.push((
            LoadedPolicy {
                policy,
                source: source.clone(),
                code,
                text: ptext,
            },
            text_arc.clone(),
            offset,
        ));
    }
}

/// Loads and validates `cfg`.
pub(crate) fn load(cfg: &AuthzConfig) -> Result<Loaded, PolicyError> {
    let mut issues = Issues::default();
    let schema = build_schema(cfg, &mut issues);
    let types = Types::new().map_err(|e| PolicyError::single(SCHEMA_SOURCE, e))?;
    let instruments = build_instruments(cfg, &types.instrument, &mut issues);

    let mut sources: Vec<(&str, &str)> = vec![(KEY_POLICIES_SOURCE, KEY_POLICIES)];
    if cfg.defaults {
        sources.push((DEFAULT_POLICIES_SOURCE, DEFAULT_POLICIES));
    }
    let mut names = HashSet::new();
    for s in &cfg.sources {
        if !names.insert(s.name.as_str())
            || s.name == KEY_POLICIES_SOURCE
            || (cfg.defaults && s.name == DEFAULT_POLICIES_SOURCE)
        {
            issues.plain(
                &s.name,
                "a policy source with this name is already loaded".into(),
            );
            continue;
        }
        sources.push((s.name.as_str(), s.text.as_str()));
    }
    let mut ids = HashMap::new();
    let mut parsed = Vec::new();
    for (name, text) in sources {
        parse_source(name, text, &mut ids, &mut parsed, &mut issues);
    }

    let Some((schema, schema_text)) = schema else {
        return Err(PolicyError { issues: issues.0 });
    };

    // Strict validation of everything that parsed.
    let mut set = PolicySet::new();
    let mut by_id: HashMap<PolicyId, (Arc<str>, Arc<str>)> = HashMap::new();
    for (p, text, _) in &parsed {
        by_id.insert(p.policy.id().clone(), (p.source.clone(), text.clone()));
        if let Err(e) = set.add(p.policy.clone()) {
            issues.plain(&p.source, e.to_string());
        }
    }
    let validator = Validator::new(schema.clone());
    let result = validator.validate(&set, ValidationMode::Strict);
    let mut validation: Vec<(String, usize, PolicyIssue)> = Vec::new();
    for e in result.validation_errors() {
        let mut one = Issues::default();
        match by_id.get(e.policy_id()) {
            Some((source, text)) => one.diagnostic(source, text, e, e.to_string()),
            None => one.plain(SCHEMA_SOURCE, e.to_string()),
        }
        for i in one.0 {
            let order = parsed
                .iter()
                .position(|(p, _, _)| p.policy.id() == e.policy_id())
                .unwrap_or(usize::MAX);
            validation.push((i.source.clone(), order, i));
        }
    }
    // The validator reports an error once per request environment (action)
    // it applies to: keep one per position, deterministically.
    validation.sort_by(|(_, oa, a), (_, ob, b)| {
        (*oa, a.line, a.column, &a.message).cmp(&(*ob, b.line, b.column, &b.message))
    });
    validation.dedup_by(|(sa, oa, a), (sb, ob, b)| {
        sa == sb && oa == ob && a.line == b.line && a.column == b.column
    });
    issues.0.extend(validation.into_iter().map(|(_, _, i)| i));

    if !issues.0.is_empty() {
        return Err(PolicyError { issues: issues.0 });
    }
    let (actions, action_order) = build_actions(&schema);
    Ok(Loaded {
        schema_text,
        policies: parsed.into_iter().map(|(p, _, _)| p).collect(),
        actions,
        action_order,
        instruments,
        types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé d", 0), (1, 1));
        assert_eq!(line_col("ab\ncé d", 3), (2, 1));
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
