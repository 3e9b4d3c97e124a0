//! `[waf]`: the positive model's limits and the injection detector's mode.
//!
//! ```toml
//! [waf]
//! mode = "block"          # block | detect | off; a route's `waf` overrides it
//! max_depth = 16          # JSON nesting
//! max_string_bytes = 4096 # any one string, key, query value or path param
//! max_fields = 1024       # JSON values / query params per request
//! max_query_bytes = 4096  # raw query string
//! ```

use serde::Deserialize;

use super::{k, Compiler, WafMode};

/// `[waf]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafConfig {
    /// Default detector mode for routes without their own `waf`.
    pub mode: WafMode,
    /// Deepest JSON nesting.
    pub max_depth: usize,
    /// Longest string.
    pub max_string_bytes: usize,
    /// Most JSON values / query params.
    pub max_fields: usize,
    /// Longest raw query string.
    pub max_query_bytes: usize,
}

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            mode: WafMode::Block,
            max_depth: 16,
            max_string_bytes: 4096,
            max_fields: 1024,
            max_query_bytes: 4096,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWaf {
    mode: Option<String>,
    max_depth: Option<usize>,
    max_string_bytes: Option<usize>,
    max_fields: Option<usize>,
    max_query_bytes: Option<usize>,
}

impl Compiler<'_> {
    pub(super) fn waf(&mut self, table: &toml::Table) -> WafConfig {
        let raw = match table.get("waf") {
            Some(v) => self
                .de::<RawWaf>(v.clone(), &[k("waf")])
                .unwrap_or_default(),
            None => RawWaf::default(),
        };
        let d = WafConfig::default();
        let p = |n: &str| [k("waf"), k(n)];
        let mode = match raw.mode.as_deref() {
            None => d.mode,
            Some(m) => self.waf_mode(m, &p("mode")).unwrap_or(d.mode),
        };
        let mut range = |v: Option<usize>, def: usize, lo: usize, hi: usize, name: &str| {
            let v = v.unwrap_or(def);
            if !(lo..=hi).contains(&v) {
                self.err(&p(name), format!("must be between {lo} and {hi}"));
            }
            v
        };
        WafConfig {
            mode,
            max_depth: range(raw.max_depth, d.max_depth, 1, 100, "max_depth"),
            max_string_bytes: range(
                raw.max_string_bytes,
                d.max_string_bytes,
                16,
                1024 * 1024,
                "max_string_bytes",
            ),
            max_fields: range(raw.max_fields, d.max_fields, 1, 100_000, "max_fields"),
            max_query_bytes: range(
                raw.max_query_bytes,
                d.max_query_bytes,
                16,
                64 * 1024,
                "max_query_bytes",
            ),
        }
    }

    pub(super) fn waf_mode(&mut self, m: &str, path: &[super::Seg]) -> Option<WafMode> {
        match m {
            "block" => Some(WafMode::Block),
            "detect" => Some(WafMode::Detect),
            "off" => Some(WafMode::Off),
            other => {
                self.err(
                    path,
                    format!("`{other}` is not one of `block`, `detect`, `off`"),
                );
                None
            }
        }
    }
}
