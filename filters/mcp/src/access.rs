//! Who may do what: a rule's [`Access`], checked against the verified
//! identity the JWT stage handed on, and the [`NameTable`] that finds the
//! rule of a method, tool or prompt name.

use palisade_shared::contract::{Identity, IdentityClaim};

/// What a verified identity must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// Every one of these scopes.
    pub scopes_all: Vec<String>,
    /// At least one of these scopes (when not empty).
    pub scopes_any: Vec<String>,
    /// Each claim must have one of its values.
    pub claims: Vec<(IdentityClaim, Vec<String>)>,
}

/// A rule's verdict on who may do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a verified identity.
    Allow,
    /// No one.
    Deny,
    /// A verified identity meeting the requirement.
    Require(Requirement),
}

/// Why an [`Access`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The rule refuses everyone (or no rule names the thing).
    Rule,
    /// The rule needs a verified identity and there is none.
    Unauthenticated {
        /// The scopes the rule needs, space separated (for the challenge).
        scope: Option<String>,
    },
    /// The identity lacks scopes: these, space separated, would do.
    Scope(String),
    /// A claim does not have a required value.
    Claim,
}

impl Requirement {
    /// The scopes to name in a challenge, space separated.
    fn needed_scopes(&self, have: &[String]) -> Option<String> {
        let mut needed: Vec<&str> = self
            .scopes_all
            .iter()
            .filter(|s| !have.contains(s))
            .map(String::as_str)
            .collect();
        if !self.scopes_any.is_empty() && !self.scopes_any.iter().any(|s| have.contains(s)) {
            if let Some(first) = self.scopes_any.first() {
                needed.push(first);
            }
        }
        (!needed.is_empty()).then(|| needed.join(" "))
    }
}

impl Access {
    /// Whether `identity` (the verified one, if any) may do it.
    pub fn check(&self, identity: Option<&Identity>) -> Result<(), Denied> {
        let requirement = match self {
            Access::Allow => return Ok(()),
            Access::Deny => return Err(Denied::Rule),
            Access::Require(r) => r,
        };
        let Some(identity) = identity else {
            return Err(Denied::Unauthenticated {
                scope: requirement.needed_scopes(&[]),
            });
        };
        if let Some(scope) = requirement.needed_scopes(&identity.scope) {
            return Err(Denied::Scope(scope));
        }
        let claims_ok = requirement
            .claims
            .iter()
            .all(|(field, wanted)| field.holds_one_of(identity, wanted));
        if claims_ok {
            Ok(())
        } else {
            Err(Denied::Claim)
        }
    }
}

/// Rules by name: exact names, then the longest `prefix*`, then `*`.
#[derive(Debug, Clone)]
pub struct NameTable<T> {
    exact: Vec<(String, T)>,
    prefixes: Vec<(String, T)>,
    fallback: Option<T>,
}

impl<T> Default for NameTable<T> {
    fn default() -> Self {
        NameTable {
            exact: Vec::new(),
            prefixes: Vec::new(),
            fallback: None,
        }
    }
}

impl<T> NameTable<T> {
    /// Adds the rule of `name` (`*`: every other name; `x*`: names
    /// starting with `x`).
    pub fn insert(&mut self, name: &str, rule: T) {
        if name == "*" {
            self.fallback = Some(rule);
        } else if let Some(prefix) = name.strip_suffix('*') {
            self.prefixes.push((prefix.to_string(), rule));
            // Longest first, so the most specific prefix wins.
            self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        } else {
            self.exact.push((name.to_string(), rule));
        }
    }

    /// The rule of `name`, `None` when no rule names it.
    pub fn lookup(&self, name: &str) -> Option<&T> {
        self.exact
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| name.starts_with(p.as_str()))
            })
            .map(|(_, rule)| rule)
            .or(self.fallback.as_ref())
    }

    /// The names given exactly.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(scopes: &[&str]) -> Identity {
        Identity {
            provider: "corp".into(),
            iss: "https://idp".into(),
            sub: Some("alice".into()),
            aud: vec!["https://mcp.example.com/mcp".into()],
            client_id: Some("agent".into()),
            scope: scopes.iter().map(|s| s.to_string()).collect(),
            acr: Some("mfa".into()),
            amr: vec!["pwd".into(), "otp".into()],
            ..Identity::default()
        }
    }

    fn require(all: &[&str], any: &[&str], claims: Vec<(IdentityClaim, &[&str])>) -> Access {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Access::Require(Requirement {
            scopes_all: list(all),
            scopes_any: list(any),
            claims: claims.into_iter().map(|(f, v)| (f, list(v))).collect(),
        })
    }

    #[test]
    fn every_rule_kind() {
        let id = identity(&["read", "write"]);
        let cases: Vec<(Access, Option<&Identity>, Result<(), Denied>)> = vec![
            (Access::Allow, None, Ok(())),
            (Access::Allow, Some(&id), Ok(())),
            (Access::Deny, Some(&id), Err(Denied::Rule)),
            (Access::Deny, None, Err(Denied::Rule)),
            (require(&[], &[], vec![]), Some(&id), Ok(())),
            (
                require(&[], &[], vec![]),
                None,
                Err(Denied::Unauthenticated { scope: None }),
            ),
            (
                require(&["admin"], &[], vec![]),
                None,
                Err(Denied::Unauthenticated {
                    scope: Some("admin".into()),
                }),
            ),
            (require(&["read", "write"], &[], vec![]), Some(&id), Ok(())),
            (
                require(&["read", "admin", "root"], &[], vec![]),
                Some(&id),
                Err(Denied::Scope("admin root".into())),
            ),
            (require(&[], &["admin", "write"], vec![]), Some(&id), Ok(())),
            (
                require(&[], &["admin", "root"], vec![]),
                Some(&id),
                Err(Denied::Scope("admin".into())),
            ),
            (
                require(&[], &[], vec![(IdentityClaim::Sub, &["alice", "bob"])]),
                Some(&id),
                Ok(()),
            ),
            (
                require(&[], &[], vec![(IdentityClaim::Sub, &["bob"])]),
                Some(&id),
                Err(Denied::Claim),
            ),
            (
                require(&[], &[], vec![(IdentityClaim::Amr, &["otp"])]),
                Some(&id),
                Ok(()),
            ),
            (
                require(&[], &[], vec![(IdentityClaim::Amr, &["hwk"])]),
                Some(&id),
                Err(Denied::Claim),
            ),
            (
                require(
                    &[],
                    &[],
                    vec![
                        (IdentityClaim::ClientId, &["agent"]),
                        (IdentityClaim::Acr, &["mfa"]),
                    ],
                ),
                Some(&id),
                Ok(()),
            ),
            (
                require(
                    &[],
                    &[],
                    vec![(IdentityClaim::Aud, &["https://mcp.example.com/mcp"])],
                ),
                Some(&id),
                Ok(()),
            ),
            (
                require(&[], &[], vec![(IdentityClaim::Iss, &["https://other"])]),
                Some(&id),
                Err(Denied::Claim),
            ),
            (
                require(
                    &[],
                    &[],
                    vec![
                        (IdentityClaim::Scope, &["write"]),
                        (IdentityClaim::Provider, &["corp"]),
                    ],
                ),
                Some(&id),
                Ok(()),
            ),
        ];
        for (i, (access, identity, want)) in cases.into_iter().enumerate() {
            assert_eq!(access.check(identity), want, "case {i}: {access:?}");
        }
        let no_sub = Identity {
            sub: None,
            ..identity(&[])
        };
        assert_eq!(
            require(&[], &[], vec![(IdentityClaim::Sub, &[""])]).check(Some(&no_sub)),
            Err(Denied::Claim),
            "an absent claim never equals anything"
        );
    }

    #[test]
    fn names_exact_then_longest_prefix_then_fallback() {
        let mut t = NameTable::default();
        t.insert("*", 0);
        t.insert("admin_*", 1);
        t.insert("admin_audit_*", 2);
        t.insert("admin_audit_read", 3);
        assert_eq!(t.lookup("search"), Some(&0));
        assert_eq!(t.lookup("admin_drop"), Some(&1));
        assert_eq!(t.lookup("admin_audit_write"), Some(&2));
        assert_eq!(t.lookup("admin_audit_read"), Some(&3));
        assert_eq!(t.lookup("admin_"), Some(&1));
        let mut closed = NameTable::default();
        closed.insert("search", 1);
        assert_eq!(closed.lookup("Search"), None, "names are case-sensitive");
        assert_eq!(closed.exact_names().collect::<Vec<_>>(), ["search"]);
    }
}
