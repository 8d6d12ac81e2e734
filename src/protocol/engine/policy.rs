use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a register shows concurrent writes (see the conflict matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Last-Write-Wins by hybrid logical clock; no conflict shown.
    #[default]
    Lww,
    /// Siblings kept and shown until a write resolves them.
    MultiValue,
    /// Siblings kept, and the resolver peer settles them through the
    /// reconciliation exchange.
    Reconcile,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown conflict policy {0:?}: use \"lww\", \"multi-value\" or \"reconcile\"")]
pub struct UnknownPolicy(pub String);

impl FromStr for ConflictPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lww" => Ok(ConflictPolicy::Lww),
            "multi-value" => Ok(ConflictPolicy::MultiValue),
            "reconcile" => Ok(ConflictPolicy::Reconcile),
            _ => Err(UnknownPolicy(s.to_string())),
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictPolicy::Lww => "lww",
            ConflictPolicy::MultiValue => "multi-value",
            ConflictPolicy::Reconcile => "reconcile",
        })
    }
}

/// Policies by key prefix; the longest matching prefix wins.
#[derive(Debug, Clone, Default)]
pub struct Policies(Vec<(String, ConflictPolicy)>);

impl Policies {
    pub fn set(&mut self, prefix: &str, policy: ConflictPolicy) {
        self.0.retain(|(p, _)| p != prefix);
        self.0.push((prefix.to_string(), policy));
        self.0
            .sort_unstable_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    pub fn get(&self, key: &str) -> ConflictPolicy {
        self.0
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map(|(_, policy)| *policy)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut p = Policies::default();
        p.set("doc/", ConflictPolicy::Reconcile);
        p.set("doc/draft/", ConflictPolicy::MultiValue);
        assert_eq!(p.get("doc/a"), ConflictPolicy::Reconcile);
        assert_eq!(p.get("doc/draft/a"), ConflictPolicy::MultiValue);
        assert_eq!(p.get("other"), ConflictPolicy::Lww);
        assert_eq!("multi-value".parse(), Ok(ConflictPolicy::MultiValue));
        assert!("nope".parse::<ConflictPolicy>().is_err());
    }
}
