//! Route table: method + path template → route. Pure, no I/O.
//!
//! Literal-only paths are found with one hash lookup; templated paths are
//! matched segment by segment. A path that matches no template is `NotFound`;
//! one that matches a template under another method is `MethodNotAllowed`.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use rampart_core::config::{parse_template, RouteConfig, TemplateSeg};

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// The route's configuration.
    pub cfg: RouteConfig,
    /// Parsed rewrite template.
    pub rewrite: Option<Vec<TemplateSeg>>,
    /// Index of the route in the config.
    pub index: usize,
    /// Cached metric handles (`route` label = action).
    pub stats: crate::stats::RouteStats,
}

#[derive(Debug)]
struct Entry {
    segs: Vec<TemplateSeg>,
    by_method: Vec<(Method, Arc<Route>)>,
}

/// The route table.
#[derive(Debug, Default)]
pub struct Router {
    literal: HashMap<String, usize>,
    entries: Vec<Entry>,
    templated: Vec<usize>,
}

/// Result of a lookup.
#[derive(Debug)]
pub enum Match<'a> {
    /// Found; captured parameters in template order.
    Found(&'a Arc<Route>, Vec<(&'a str, &'a str)>),
    /// No template matches the path.
    NotFound,
    /// A template matches, not under this method; the allowed methods.
    MethodNotAllowed(Vec<&'a Method>),
}

impl Router {
    /// Builds the table from validated routes (templates already checked).
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut r = Router::default();
        let mut by_template: HashMap<Vec<TemplateSeg>, usize> = HashMap::new();
        for (index, cfg) in routes.iter().enumerate() {
            let Ok(segs) = parse_template(&cfg.path) else {
                continue; // INVARIANT: config compile rejected bad templates
            };
            let rewrite = cfg.rewrite.as_deref().and_then(|t| parse_template(t).ok());
            let route = Arc::new(Route {
                stats: crate::stats::RouteStats::new(&cfg.action),
                cfg: cfg.clone(),
                rewrite,
                index,
            });
            // Templates differing only in placeholder names share an entry.
            let shape: Vec<TemplateSeg> = segs
                .iter()
                .map(|s| match s {
                    TemplateSeg::Param(_) => TemplateSeg::Param(String::new()),
                    l => l.clone(),
                })
                .collect();
            let idx = *by_template.entry(shape).or_insert_with(|| {
                r.entries.push(Entry {
                    segs: segs.clone(),
                    by_method: Vec::new(),
                });
                r.entries.len() - 1
            });
            if let Some(e) = r.entries.get_mut(idx) {
                e.by_method.push((cfg.method.clone(), route));
            }
        }
        for (i, e) in r.entries.iter().enumerate() {
            if e.segs.iter().all(|s| matches!(s, TemplateSeg::Literal(_))) {
                let path: String = e
                    .segs
                    .iter()
                    .map(|s| match s {
                        TemplateSeg::Literal(l) => format!("/{l}"),
                        TemplateSeg::Param(_) => String::new(),
                    })
                    .collect();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                r.literal.insert(path, i);
            } else {
                r.templated.push(i);
            }
        }
        r
    }

    /// Looks up `method path` (path without query).
    pub fn lookup<'a>(&'a self, method: &Method, path: &'a str) -> Match<'a> {
        if let Some(e) = self.literal.get(path).and_then(|i| self.entries.get(*i)) {
            return pick(e, method, Vec::new());
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Match::NotFound;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        for i in &self.templated {
            let Some(e) = self.entries.get(*i) else {
                continue;
            };
            if e.segs.len() != parts.len() {
                continue;
            }
            let mut params = Vec::new();
            let ok = e.segs.iter().zip(parts.iter()).all(|(s, p)| match s {
                TemplateSeg::Literal(l) => l == p,
                TemplateSeg::Param(n) => {
                    if p.is_empty() {
                        false
                    } else {
                        params.push((n.as_str(), *p));
                        true
                    }
                }
            });
            if ok {
                return pick(e, method, params);
            }
        }
        Match::NotFound
    }
}

fn pick<'a>(e: &'a Entry, method: &Method, params: Vec<(&'a str, &'a str)>) -> Match<'a> {
    match e.by_method.iter().find(|(m, _)| m == method) {
        Some((_, r)) => Match::Found(r, params),
        None => Match::MethodNotAllowed(e.by_method.iter().map(|(m, _)| m).collect()),
    }
}

/// Renders the upstream path: the rewrite template with captured params, or
/// the original path.
pub fn upstream_path(route: &Route, path: &str, params: &[(&str, &str)]) -> String {
    match &route.rewrite {
        None => path.to_owned(),
        Some(segs) if segs.is_empty() => "/".to_owned(),
        Some(segs) => {
            let mut out = String::with_capacity(path.len() + 16);
            for s in segs {
                out.push('/');
                match s {
                    TemplateSeg::Literal(l) => out.push_str(l),
                    TemplateSeg::Param(n) => {
                        if let Some((_, v)) = params.iter().find(|(k, _)| k == n) {
                            out.push_str(v);
                        }
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::config::RetryPolicy;

    fn route(method: Method, path: &str, rewrite: Option<&str>) -> RouteConfig {
        RouteConfig {
            method,
            path: path.into(),
            upstream: "u".into(),
            action: "A".into(),
            scope: "public".into(),
            weight: 1,
            rewrite: rewrite.map(Into::into),
            max_body_bytes: None,
            timeout: None,
            retry: RetryPolicy::Safe,
            group: None,
            schema: None,
            waf: None,
            account: None,
            order_id: None,
            instrument: None,
        }
    }

    #[test]
    fn matches_literal_template_and_methods() {
        let r = Router::new(&[
            route(Method::GET, "/v1/markets", None),
            route(Method::GET, "/v1/orders", None),
            route(Method::POST, "/v1/orders", None),
            route(
                Method::DELETE,
                "/v1/orders/{order_id}",
                Some("/internal/cancel/{order_id}"),
            ),
            route(Method::GET, "/v1/markets/{symbol}/book", None),
        ]);
        assert!(
            matches!(r.lookup(&Method::GET, "/v1/markets"), Match::Found(_, p) if p.is_empty())
        );
        assert!(
            matches!(r.lookup(&Method::POST, "/v1/orders"), Match::Found(rt, _) if rt.cfg.method == Method::POST)
        );
        match r.lookup(&Method::DELETE, "/v1/orders/abc") {
            Match::Found(rt, p) => {
                assert_eq!(p, vec![("order_id", "abc")]);
                assert_eq!(
                    upstream_path(rt, "/v1/orders/abc", &p),
                    "/internal/cancel/abc"
                );
            }
            other => panic!("{other:?}"),
        }
        match r.lookup(&Method::GET, "/v1/markets/BTC-USD/book") {
            Match::Found(_, p) => assert_eq!(p, vec![("symbol", "BTC-USD")]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.lookup(&Method::GET, "/v1/nope"),
            Match::NotFound
        ));
        assert!(matches!(
            r.lookup(&Method::GET, "/v1/orders/"),
            Match::NotFound
        ));
        assert!(matches!(
            r.lookup(&Method::GET, "/v1/markets//book"),
            Match::NotFound
        ));
        match r.lookup(&Method::PUT, "/v1/orders") {
            Match::MethodNotAllowed(m) => assert_eq!(m.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.lookup(&Method::GET, "/v1/orders/x"),
            Match::MethodNotAllowed(_)
        ));
    }
}
