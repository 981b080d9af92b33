//! Access policies (Cube's `access_policy`) evaluated for one user: whether they may read a
//! cube or view, which of its members, and which rows. Pure: the semantic layer turns the
//! row conditions into filters over the table.
//!
//! Cube's rules: a table without policies is open to everyone; a table with policies is
//! closed to every user none of them is for (a policy is for the roles it names, or for
//! everyone with `"*"`); the policies that are for a user combine with OR — the members any
//! of them shows, the rows any of them shows.

use std::collections::{BTreeMap, BTreeSet};

use super::{AccessPolicy, FilterOperator, Includes, RowFilter};

/// Who is asking: a user, their roles, their attributes (each a list of values; a single
/// value is a list of one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub user: String,
    pub roles: Vec<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// A row condition over a table's members, with the user's attributes substituted.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `member operator values` (values as text, cast to the member's type when applied).
    Test { member: String, operator: FilterOperator, values: Vec<String> },
    And(Vec<Condition>),
    Or(Vec<Condition>),
    /// No row (a filter naming an attribute the user does not have).
    Nothing,
}

/// The rows a user sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    All,
    /// Rows meeting at least one of the conditions (none: no row).
    AnyOf(Vec<Condition>),
}

/// What a user may read of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The members they see; `None`: all of them.
    pub members: Option<BTreeSet<String>>,
    pub rows: Rows,
}

impl Grant {
    /// Everything: a table without policies.
    pub fn all() -> Grant {
        Grant { members: None, rows: Rows::All }
    }

    pub fn sees(&self, member: &str) -> bool {
        self.members.as_ref().is_none_or(|m| m.contains(member))
    }
}

/// Whether a policy is for the principal.
fn applies(p: &AccessPolicy, who: &Principal) -> bool {
    p.roles().iter().any(|r| *r == "*" || who.roles.iter().any(|mine| mine == r))
}

fn listed(i: &Includes, all: &[&str]) -> BTreeSet<String> {
    match i {
        Includes::All(_) => all.iter().map(|s| s.to_string()).collect(),
        Includes::List(l) => l.iter().cloned().collect(),
    }
}

/// What `who` may read of a table with `policies` and members `all`; `None`: nothing (the
/// table does not exist for them).
pub fn grant(policies: &[AccessPolicy], all: &[&str], who: &Principal) -> Option<Grant> {
    if policies.is_empty() {
        return Some(Grant::all());
    }
    let mine: Vec<&AccessPolicy> = policies.iter().filter(|p| applies(p, who)).collect();
    if mine.is_empty() {
        return None;
    }
    let mut members: BTreeSet<String> = BTreeSet::new();
    let mut every_member = false;
    let mut conditions = Vec::new();
    let mut every_row = false;
    for p in mine {
        match &p.member_level {
            None => every_member = true,
            Some(m) => {
                let mut shown = m.includes.as_ref().map(|i| listed(i, all)).unwrap_or_else(|| listed(&Includes::All("*".into()), all));
                if let Some(e) = &m.excludes {
                    let hidden = listed(e, all);
                    shown.retain(|n| !hidden.contains(n));
                }
                members.extend(shown);
            }
        }
        match &p.row_level {
            None => every_row = true,
            Some(r) if r.allow_all == Some(true) => every_row = true,
            Some(r) if r.filters.is_empty() => conditions.push(Condition::Nothing),
            Some(r) => conditions.push(Condition::And(r.filters.iter().map(|f| condition(f, who)).collect())),
        }
    }
    let members = if every_member || all.iter().all(|m| members.contains(*m)) { None } else { Some(members) };
    let rows = if every_row { Rows::All } else { Rows::AnyOf(conditions) };
    Some(Grant { members, rows })
}

/// A filter as a condition, with the user's attributes in place of `{ userAttributes.x }`.
fn condition(f: &RowFilter, who: &Principal) -> Condition {
    if let Some(or) = &f.or {
        return Condition::Or(or.iter().map(|g| condition(g, who)).collect());
    }
    if let Some(and) = &f.and {
        return Condition::And(and.iter().map(|g| condition(g, who)).collect());
    }
    let (Some(member), Some(operator)) = (&f.member, f.operator) else { return Condition::Nothing };
    let mut values = Vec::new();
    for v in &f.values {
        match v.attribute() {
            None => values.push(v.text()),
            Some(Ok(name)) => match who.attributes.get(&name) {
                Some(vs) if !vs.is_empty() => values.extend(vs.iter().cloned()),
                // An attribute the user lacks shows nothing, whatever the operator (a
                // `notEquals` over no value must not show everything).
                _ => return Condition::Nothing,
            },
            Some(Err(_)) => return Condition::Nothing,
        }
    }
    Condition::Test { member: member.clone(), operator, values }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |f: &mut std::fmt::Formatter<'_>, cs: &[Condition], op: &str| -> std::fmt::Result {
            write!(f, "(")?;
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, ")")
        };
        match self {
            Condition::Test { member, operator, values } => write!(f, "{member} {} [{}]", operator.name(), values.join(", ")),
            Condition::And(cs) => join(f, cs, "AND"),
            Condition::Or(cs) => join(f, cs, "OR"),
            Condition::Nothing => write!(f, "no row"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(yaml: &str) -> Vec<AccessPolicy> {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn who(roles: &[&str], attrs: &[(&str, &[&str])]) -> Principal {
        Principal {
            user: "u".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
        }
    }

    const ALL: &[&str] = &["region", "store", "footfall", "revenue"];

    #[test]
    fn policies_combine_with_or_and_deny_everyone_else() {
        let p = policies(
            r#"
- group: head_office
- group: regional_manager
  row_level:
    filters:
      - member: region
        operator: equals
        values: ["{ userAttributes.region }"]
- groups: [partner]
  member_level:
    excludes: [revenue]
  row_level:
    filters:
      - member: store
        operator: equals
        values: ["{ userAttributes.stores }"]
"#,
        );
        assert_eq!(grant(&[], ALL, &who(&[], &[])), Some(Grant::all()));
        assert_eq!(grant(&p, ALL, &who(&["nobody"], &[])), None);
        assert_eq!(grant(&p, ALL, &who(&["head_office"], &[])), Some(Grant::all()));
        let g = grant(&p, ALL, &who(&["regional_manager"], &[("region", &["Bretagne"])])).unwrap();
        assert_eq!(g.members, None);
        assert_eq!(g.rows, Rows::AnyOf(vec![Condition::And(vec![Condition::Test { member: "region".into(), operator: FilterOperator::Equals, values: vec!["Bretagne".into()] }])]));
        let g = grant(&p, ALL, &who(&["partner"], &[("stores", &["A", "B"])])).unwrap();
        assert!(!g.sees("revenue") && g.sees("footfall"));
        assert_eq!(g.rows.clone(), Rows::AnyOf(vec![Condition::And(vec![Condition::Test { member: "store".into(), operator: FilterOperator::Equals, values: vec!["A".into(), "B".into()] }])]));
        // Two roles: the union of members and of rows.
        let g = grant(&p, ALL, &who(&["partner", "regional_manager"], &[("stores", &["A"]), ("region", &["Bretagne"])])).unwrap();
        assert!(g.sees("revenue"));
        assert!(matches!(&g.rows, Rows::AnyOf(c) if c.len() == 2));
        // A missing attribute shows no row, never all of them.
        let g = grant(&p, ALL, &who(&["regional_manager"], &[])).unwrap();
        assert_eq!(g.rows, Rows::AnyOf(vec![Condition::And(vec![Condition::Nothing])]));
    }

    #[test]
    fn allow_all_and_member_lists() {
        let p = policies(
            r#"
- group: "*"
  member_level:
    includes: [region, footfall]
  row_level:
    allow_all: true
- group: closed
  row_level:
    allow_all: false
"#,
        );
        let g = grant(&p, ALL, &who(&["x"], &[])).unwrap();
        assert_eq!(g.rows, Rows::All);
        assert_eq!(g.members, Some(["footfall", "region"].iter().map(|s| s.to_string()).collect()));
        let g = grant(&p, ALL, &who(&["closed"], &[])).unwrap();
        // The "*" policy applies too: its rows are all rows.
        assert_eq!(g.rows, Rows::All);
        assert_eq!(g.members, None);
    }
}
