//! The kill switch (issue 6, first slice): an operator stops new orders at
//! the edge — for one key, one account or everyone — and they are refused
//! with `403 KILL_SWITCH` before any limit, risk check or upstream sees
//! them. Cancels, reads and everything else keep working, so a desk can
//! still flatten. Engaged switches are persisted to `kill-switch.json` in
//! the data dir (written atomically), so a restart never silently releases
//! one; an unreadable file refuses to start rather than starting released.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use rampart_core::problem::{Problem, ProblemCode};
use serde::{Deserialize, Serialize};

/// What a switch covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope", content = "id")]
pub enum Target {
    /// Every order.
    Global,
    /// Orders of one account.
    Account(String),
    /// Orders signed by one key.
    Key(String),
}

/// Why and when a switch was engaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engaged {
    /// Operator's reason (shown to clients).
    pub reason: String,
    /// Unix ms.
    pub since_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    switches: Vec<(Target, Engaged)>,
}

/// The gateway-wide switches.
#[derive(Debug)]
pub struct KillSwitch {
    map: RwLock<BTreeMap<Target, Engaged>>,
    /// Fast path: nothing engaged, no lock taken.
    any: AtomicBool,
    file: Option<PathBuf>,
    /// Actions the switch stops.
    actions: Vec<String>,
}

/// Most reasons are short; longer ones are cut.
const MAX_REASON: usize = 200;

impl KillSwitch {
    /// Loads the persisted switches from `data_dir` (none if the file does
    /// not exist); `actions` are the order-entry actions it stops.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read or parsed.
    pub fn load(data_dir: Option<&Path>, actions: Vec<String>) -> Result<Self, String> {
        let file = data_dir.map(|d| d.join("kill-switch.json"));
        let mut map = BTreeMap::new();
        if let Some(f) = &file {
            match std::fs::read(f) {
                Ok(bytes) => {
                    let st: State = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("`{}` is not a kill-switch file: {e}", f.display()))?;
                    map.extend(st.switches);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read `{}`: {e}", f.display())),
            }
        }
        let any = AtomicBool::new(!map.is_empty());
        if !map.is_empty() {
            tracing::warn!(target: "rampart::kill", engaged = map.len(), "kill switches engaged from the previous run");
        }
        Ok(Self {
            map: RwLock::new(map),
            any,
            file,
            actions,
        })
    }

    /// Refuses an order of `key`/`account` on `action` while a switch covers it.
    ///
    /// # Errors
    ///
    /// The `403 KILL_SWITCH` problem naming the scope and reason.
    pub fn check(&self, action: &str, key: &str, account: &str) -> Result<(), Box<Problem>> {
        if !self.any.load(Ordering::Acquire) || !self.actions.iter().any(|a| a == action) {
            return Ok(());
        }
        let map = self.map.read();
        let hit = [
            Target::Global,
            Target::Account(account.to_owned()),
            Target::Key(key.to_owned()),
        ]
        .into_iter()
        .find_map(|t| map.get(&t).map(|e| (t, e.clone())));
        match hit {
            None => Ok(()),
            Some((t, e)) => {
                let scope = match &t {
                    Target::Global => "global",
                    Target::Account(_) => "account",
                    Target::Key(_) => "key",
                };
                Err(Box::new(
                    Problem::new(ProblemCode::KillSwitch)
                        .detail(format!(
                            "new orders are stopped ({scope} kill switch): {}",
                            e.reason
                        ))
                        .with("scope", scope),
                ))
            }
        }
    }

    /// Engages (or re-engages with a new reason) a switch; persists.
    ///
    /// # Errors
    ///
    /// The state could not be persisted; the switch is engaged in memory
    /// anyway (stopping orders is the safe side).
    pub fn engage(&self, target: Target, reason: &str, now_ms: u64) -> Result<(), String> {
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect();
        let mut map = self.map.write();
        map.insert(
            target,
            Engaged {
                reason,
                since_ms: now_ms,
            },
        );
        self.any.store(true, Ordering::Release);
        self.persist(&map)
    }

    /// Releases a switch; returns whether it was engaged.
    ///
    /// # Errors
    ///
    /// The state could not be persisted (the release stays in memory only,
    /// so a restart would engage it again: the safe side).
    pub fn release(&self, target: &Target) -> Result<bool, String> {
        let mut map = self.map.write();
        let was = map.remove(target).is_some();
        self.any.store(!map.is_empty(), Ordering::Release);
        self.persist(&map).map(|()| was)
    }

    /// Every engaged switch.
    #[must_use]
    pub fn list(&self) -> Vec<(Target, Engaged)> {
        self.map
            .read()
            .iter()
            .map(|(t, e)| (t.clone(), e.clone()))
            .collect()
    }

    fn persist(&self, map: &BTreeMap<Target, Engaged>) -> Result<(), String> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        let st = State {
            switches: map.iter().map(|(t, e)| (t.clone(), e.clone())).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&st).map_err(|e| e.to_string())?;
        let tmp = f.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, f)?;
            if let Some(dir) = f.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("cannot persist `{}`: {e}", f.display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn scopes_persist_and_release() {
        let d = tempfile::tempdir().unwrap();
        let k = KillSwitch::load(Some(d.path()), vec!["PlaceOrder".into()]).unwrap();
        assert!(k.check("PlaceOrder", "k1", "a1").is_ok());
        k.engage(Target::Account("a1".into()), "fat finger\n desk 3", 1)
            .unwrap();
        let p = k.check("PlaceOrder", "k1", "a1").unwrap_err();
        assert_eq!(p.code, ProblemCode::KillSwitch);
        assert!(
            p.detail.unwrap().contains("fat finger desk 3"),
            "control characters dropped"
        );
        assert!(k.check("PlaceOrder", "k2", "a2").is_ok());
        assert!(
            k.check("CancelOrder", "k1", "a1").is_ok(),
            "cancels keep working"
        );
        // A restart keeps it engaged.
        let k2 = KillSwitch::load(Some(d.path()), vec!["PlaceOrder".into()]).unwrap();
        assert!(k2.check("PlaceOrder", "k9", "a1").is_err());
        assert!(k2.release(&Target::Account("a1".into())).unwrap());
        assert!(k2.check("PlaceOrder", "k9", "a1").is_ok());
        let k3 = KillSwitch::load(Some(d.path()), vec!["PlaceOrder".into()]).unwrap();
        assert!(k3.list().is_empty());
        k3.engage(Target::Global, "halt", 2).unwrap();
        assert!(k3.check("PlaceOrder", "x", "y").is_err());
        // A damaged file refuses to start rather than starting released.
        std::fs::write(d.path().join("kill-switch.json"), b"{not json").unwrap();
        assert!(KillSwitch::load(Some(d.path()), vec![]).is_err());
    }
}
