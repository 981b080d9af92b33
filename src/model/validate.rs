//! Checks of a parsed model: names, references, cycles, SQL syntax. Each problem is located
//! at the YAML line of the cube, member or key it is about.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::refs::{self, Ref};
use super::{Cube, Includes, MeasureType, Model, Problem};
use crate::error::did_you_mean;

/// Where in a file a problem is: a cube or view, optionally a member, optionally a key.
struct Place<'a> {
    file: &'a Path,
    section: &'a str,
    owner: &'a str,
    member: Option<&'a str>,
    key: Option<&'a str>,
    /// Which occurrence of the member's name (0 = first; duplicates point at the later one).
    nth: usize,
}

impl Model {
    /// Line and column of a place, found by scanning the YAML text: the owner's `name:` line
    /// in its section, then the member's `name:` line after it, then the key's line.
    fn locate(&self, p: &Place) -> (usize, usize) {
        let text = self.text_of(p.file);
        let lines: Vec<&str> = text.lines().collect();
        let name_line = |from: usize, name: &str| {
            (from..lines.len()).find(|&i| {
                let t = lines[i].trim_start().trim_start_matches("- ").trim_start();
                t.strip_prefix("name:").map(|v| v.trim().trim_matches(['"', '\''])) == Some(name)
            })
        };
        let section = (0..lines.len()).find(|&i| lines[i].starts_with(&format!("{}:", p.section))).unwrap_or(0);
        let Some(mut at) = name_line(section, p.owner) else { return (1, 1) };
        if let Some(m) = p.member {
            let mut from = at + 1;
            for _ in 0..=p.nth {
                match name_line(from, m) {
                    Some(i) => {
                        at = i;
                        from = i + 1;
                    }
                    None => break,
                }
            }
        }
        if let Some(k) = p.key {
            let indent = |l: &str| l.len() - l.trim_start().trim_start_matches("- ").len();
            let base = indent(lines[at]);
            for (i, line) in lines.iter().enumerate().skip(at + 1) {
                let t = line.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if indent(line) < base || t.starts_with("- ") && indent(line) <= base {
                    break;
                }
                if t.starts_with(&format!("{k}:")) {
                    return (i + 1, line.len() - t.len() + 1);
                }
            }
        }
        let l = lines[at];
        let t = l.trim_start().trim_start_matches("- ");
        (at + 1, l.len() - t.len() + 1)
    }
}

struct Checker<'a> {
    model: &'a Model,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, p: Place, message: String) {
        let (line, column) = self.model.locate(&p);
        self.problems.push(Problem { file: p.file.to_path_buf(), line, column, message });
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_lowercase() || ch == '_')
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
}

/// What a cube's member is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Dimension,
    Measure(MeasureType),
    Segment,
}

fn members(c: &Cube) -> Vec<(&str, Kind)> {
    let mut v: Vec<(&str, Kind)> = c.dimensions.iter().map(|d| (d.name.as_str(), Kind::Dimension)).collect();
    v.extend(c.measures.iter().map(|m| (m.name.as_str(), Kind::Measure(m.kind))));
    v.extend(c.segments.iter().map(|s| (s.name.as_str(), Kind::Segment)));
    v
}

/// `sql` with its references replaced by plain identifiers (`{footfall}` is `ref_footfall`,
/// `{CUBE}` is `cube_`), so that it parses as SQL.
fn with_placeholders(sql: &str) -> Result<String, String> {
    refs::substitute(sql, |r| {
        Ok(match r {
            Ref::ThisCube => "cube_".to_string(),
            Ref::Name(n) => format!("ref_{n}"),
            Ref::Qualified(c, m) => format!("ref_{c}.ref_{m}"),
        })
    })
}

/// Parses `sql` as a SQL expression after replacing references by plain identifiers.
fn parse_expr(sql: &str) -> Result<(), String> {
    let plain = with_placeholders(sql)?;
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&plain)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            p.expect_token(&datafusion::sql::sqlparser::tokenizer::Token::EOF)?;
            Ok(e)
        })
        .map(|_| ())
        .map_err(|e| e.to_string().trim_start_matches("sql parser error: ").to_string())
}

pub(super) fn validate(model: &Model, problems: &mut Vec<Problem>) {
    let mut ck = Checker { model, problems };
    let cube_names: Vec<&str> = model.cubes.iter().map(|c| c.item.name.as_str()).collect();
    let mut seen: HashMap<&str, &Path> = HashMap::new();

    for sc in &model.cubes {
        let c = &sc.item;
        let here = |member: Option<&'static str>| Place { file: &sc.file, section: "cubes", owner: &c.name, member, key: None, nth: 0 };
        if !valid_name(&c.name) {
            ck.report(here(None), format!("cube name `{}` must be lowercase letters, digits and _", c.name));
        }
        if let Some(prev) = seen.insert(c.name.as_str(), &sc.file) {
            ck.report(here(None), format!("duplicate name `{}` (also defined in {})", c.name, prev.display()));
        }
        match (&c.sql_table, &c.sql) {
            (None, None) => ck.report(here(None), format!("cube `{}` needs `sql_table` (a lake table) or `sql`", c.name)),
            (Some(_), Some(_)) => ck.report(here(None), format!("cube `{}` has both `sql_table` and `sql`: keep one", c.name)),
            (None, Some(sql)) => {
                if let Err(e) = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).and_then(|mut p| p.parse_statements()) {
                    ck.report(Place { file: &sc.file, section: "cubes", owner: &c.name, member: None, key: Some("sql"), nth: 0 }, format!("cube `{}`: `sql` does not parse: {e}", c.name));
                }
            }
            (Some(_), None) => {}
        }
        check_cube_members(&mut ck, model, sc, &cube_names);
        let mems = members(c);
        check_policies(&mut ck, Place { file: &sc.file, section: "cubes", owner: &c.name, member: None, key: Some("access_policy"), nth: 0 }, &c.access_policy, &mems);
    }

    for sv in &model.views {
        let v = &sv.item;
        let here = Place { file: &sv.file, section: "views", owner: &v.name, member: None, key: None, nth: 0 };
        if !valid_name(&v.name) {
            ck.report(here, format!("view name `{}` must be lowercase letters, digits and _", v.name));
            continue;
        }
        if let Some(prev) = seen.insert(v.name.as_str(), &sv.file) {
            ck.report(here, format!("duplicate name `{}` (also defined in {})", v.name, prev.display()));
        }
        let mut exposed: HashMap<String, String> = HashMap::new();
        let mut exposed_kinds: Vec<(String, Kind)> = Vec::new();
        for vc in &v.cubes {
            let at = || Place { file: &sv.file, section: "views", owner: &v.name, member: None, key: Some("join_path"), nth: 0 };
            let path: Vec<&str> = vc.join_path.split('.').collect();
            let Some(mut cube) = model.cube(path[0]) else {
                let hint = did_you_mean(path[0], &cube_names);
                ck.report(at(), format!("view `{}`: unknown cube `{}` in join_path `{}`{hint}", v.name, path[0], vc.join_path));
                continue;
            };
            let mut ok = true;
            for step in &path[1..] {
                match cube.joins.iter().find(|j| j.name == *step).and_then(|j| model.cube(&j.name)) {
                    Some(next) => cube = next,
                    None => {
                        let joins: Vec<&str> = cube.joins.iter().map(|j| j.name.as_str()).collect();
                        ck.report(at(), format!(
                            "view `{}`: cube `{}` has no join to `{step}` (join_path `{}`){}",
                            v.name, cube.name, vc.join_path, did_you_mean(step, &joins)
                        ));
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
            let all: Vec<(&str, Kind)> = members(cube);
            let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
            // A cube's own policies are not a view's: its rows and members would show
            // through the view unrestricted.
            if !cube.access_policy.is_empty() {
                ck.report(at(), format!(
                    "view `{}` includes cube `{}`, which has an access_policy: a view applies its own policies only",
                    v.name, cube.name
                ));
            }
            let included: Vec<&str> = match &vc.includes {
                Includes::All(s) if s == "*" => {
                    let public = |n: &str| {
                        cube.dimensions.iter().find(|d| d.name == n).map(|d| d.public != Some(false))
                            .or_else(|| cube.measures.iter().find(|m| m.name == n).map(|m| m.public != Some(false)))
                            .or_else(|| cube.segments.iter().find(|s| s.name == n).map(|s| s.public != Some(false)))
                            .unwrap_or(true)
                    };
                    names.iter().copied().filter(|n| public(n)).collect()
                }
                Includes::All(other) => {
                    ck.report(Place { key: Some("includes"), ..at() }, format!("view `{}`: includes must be \"*\" or a list, not `{other}`", v.name));
                    continue;
                }
                Includes::List(l) => l.iter().map(String::as_str).collect(),
            };
            for n in included.iter().copied().chain(vc.excludes.iter().map(String::as_str)) {
                if !names.contains(&n) {
                    ck.report(Place { key: Some("includes"), ..at() }, format!(
                        "view `{}`: cube `{}` has no member `{n}`{}", v.name, cube.name, did_you_mean(n, &names)
                    ));
                }
            }
            for n in included.iter().filter(|n| !vc.excludes.iter().any(|e| e == *n)) {
                let exposed_name = if vc.prefix { format!("{}_{n}", cube.name) } else { n.to_string() };
                if let Some((_, k)) = all.iter().find(|(m, _)| m == n) {
                    exposed_kinds.push((exposed_name.clone(), *k));
                }
                if let Some(prev) = exposed.insert(exposed_name.clone(), cube.name.clone()) {
                    ck.report(Place { key: Some("includes"), ..at() }, format!(
                        "view `{}`: member name `{exposed_name}` comes from both `{prev}` and `{}`; set `prefix: true` or exclude one",
                        v.name, cube.name
                    ));
                }
            }
        }
        let kinds: Vec<(&str, Kind)> = exposed_kinds.iter().map(|(n, k)| (n.as_str(), *k)).collect();
        check_policies(&mut ck, Place { file: &sv.file, section: "views", owner: &v.name, member: None, key: Some("access_policy"), nth: 0 }, &v.access_policy, &kinds);
    }
}

/// Checks a cube's or view's access policies against its members (`mems`).
fn check_policies(ck: &mut Checker, at: Place, policies: &[super::AccessPolicy], mems: &[(&str, Kind)]) {
    let names: Vec<&str> = mems.iter().map(|(n, _)| *n).collect();
    let owner = at.owner;
    let place = || Place { file: at.file, section: at.section, owner: at.owner, member: None, key: at.key, nth: 0 };
    for (i, p) in policies.iter().enumerate() {
        let which = format!("`{owner}`, access policy {}", i + 1);
        let roles = p.roles();
        if roles.is_empty() {
            ck.report(place(), format!("{which}: says whom it is for with `group: ROLE` (or `groups: [..]`, `group: \"*\"` for everyone)"));
        }
        if let Some(r) = roles.iter().find(|r| **r != "*" && !valid_name(r)) {
            ck.report(place(), format!("{which}: role name `{r}` must be lowercase letters, digits and _"));
        }
        if let Some(m) = &p.member_level {
            for list in [&m.includes, &m.excludes].into_iter().flatten() {
                match list {
                    Includes::All(s) if s == "*" => {}
                    Includes::All(other) => ck.report(place(), format!("{which}: includes and excludes are \"*\" or a list, not `{other}`")),
                    Includes::List(l) => {
                        for n in l.iter().filter(|n| !names.contains(&n.as_str())) {
                            ck.report(place(), format!("{which}: `{owner}` has no member `{n}`{}", did_you_mean(n, &names)));
                        }
                    }
                }
            }
        }
        if let Some(r) = &p.row_level {
            if r.allow_all == Some(true) && !r.filters.is_empty() {
                ck.report(place(), format!("{which}: `allow_all: true` with filters: keep one"));
            }
            let mut todo: Vec<&super::RowFilter> = r.filters.iter().collect();
            while let Some(f) = todo.pop() {
                let nested = f.or.iter().chain(f.and.iter()).flatten();
                match (&f.member, f.or.is_some() || f.and.is_some()) {
                    (Some(_), true) | (None, false) => {
                        ck.report(place(), format!("{which}: a row filter is `member`, `operator` and `values`, or `or:` / `and:` a list of filters"));
                        continue;
                    }
                    (None, true) => {
                        todo.extend(nested);
                        continue;
                    }
                    (Some(_), false) => {}
                }
                let member = f.member.as_deref().unwrap_or_default();
                let member = member.strip_prefix(&format!("{owner}.")).unwrap_or(member);
                match mems.iter().find(|(n, _)| *n == member) {
                    None => ck.report(place(), format!("{which}: `{owner}` has no member `{member}`{}", did_you_mean(member, &names))),
                    Some((_, Kind::Measure(_))) => ck.report(place(), format!("{which}: `{member}` is a measure; row filters are over dimensions")),
                    Some(_) => {}
                }
                let Some(op) = f.operator else {
                    ck.report(place(), format!("{which}: the filter on `{member}` needs an `operator` (equals, notEquals, contains, startsWith, endsWith, gt, gte, lt, lte, set, notSet, …)"));
                    continue;
                };
                let (least, most) = op.arity();
                if f.values.len() < least || most.is_some_and(|m| f.values.len() > m) {
                    let want = match (least, most) {
                        (0, Some(0)) => "no values".to_string(),
                        (1, Some(1)) => "one value".to_string(),
                        _ => "one value or more".to_string(),
                    };
                    ck.report(place(), format!("{which}: `{}` on `{member}` takes {want}, not {}", op.name(), f.values.len()));
                }
                for v in &f.values {
                    if let Some(Err(e)) = v.attribute() {
                        ck.report(place(), format!("{which}: {e}"));
                    }
                }
            }
        }
    }
}

fn check_cube_members(ck: &mut Checker, model: &Model, sc: &super::Sourced<Cube>, cube_names: &[&str]) {
    let c = &sc.item;
    let mems = members(c);
    let names: Vec<&str> = mems.iter().map(|(n, _)| *n).collect();
    let mut seen = HashSet::new();
    for (n, _) in &mems {
        let nth = usize::from(seen.contains(n));
        let at = Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(n), key: None, nth };
        if !valid_name(n) {
            ck.report(at, format!("cube `{}`: member name `{n}` must be lowercase letters, digits and _", c.name));
        } else if !seen.insert(*n) {
            ck.report(at, format!("cube `{}`: duplicate member name `{n}`", c.name));
        }
    }
    let kind_of = |cube: &str, member: &str| -> Option<Kind> {
        if cube == c.name {
            mems.iter().find(|(n, _)| *n == member).map(|(_, k)| *k)
        } else {
            model.cube(cube).and_then(|o| members(o).into_iter().find(|(n, _)| *n == member).map(|(_, k)| k))
        }
    };

    // Checks one SQL string: syntax and references. `want` says which member kinds it may use.
    let check_sql = |ck: &mut Checker, member: &str, key: &'static str, sql: &str, want: &dyn Fn(Kind) -> Result<(), String>| {
        let at = || Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(member), key: Some(key), nth: 0 };
        if let Err(e) = parse_expr(sql) {
            ck.report(at(), format!("cube `{}`, `{member}`: {key} `{sql}` does not parse: {e}", c.name));
            return;
        }
        let Ok(rs) = refs::refs(sql) else { return };
        for r in rs {
            let (cube, m) = match &r {
                Ref::ThisCube => continue,
                Ref::Name(n) if cube_names.contains(&n.as_str()) && n != member && !names.contains(&n.as_str()) => continue,
                Ref::Name(n) => (c.name.as_str(), n.as_str()),
                Ref::Qualified(q, m) if q == "CUBE" => (c.name.as_str(), m.as_str()),
                Ref::Qualified(q, m) => (q.as_str(), m.as_str()),
            };
            if model.cube(cube).is_none() {
                ck.report(at(), format!("cube `{}`, `{member}`: unknown cube `{cube}` in `{{{cube}.{m}}}`{}", c.name, did_you_mean(cube, cube_names)));
                continue;
            }
            match kind_of(cube, m) {
                None => {
                    let candidates: Vec<&str> = if cube == c.name {
                        names.clone()
                    } else {
                        model.cube(cube).map(|o| members(o).iter().map(|(n, _)| *n).collect::<Vec<_>>()).unwrap_or_default()
                    };
                    ck.report(at(), format!(
                        "cube `{}`, `{member}`: unknown member `{m}` of cube `{cube}`{}",
                        c.name, did_you_mean(m, &candidates)
                    ));
                }
                Some(k) => {
                    if let Err(why) = want(k) {
                        ck.report(at(), format!("cube `{}`, `{member}`: {why} (`{m}`)", c.name));
                    }
                }
            }
        }
    };

    let dims_only = |k: Kind| match k {
        Kind::Dimension => Ok(()),
        Kind::Measure(_) => Err("row-level SQL may reference dimensions, not measures".to_string()),
        Kind::Segment => Err("segments cannot be referenced here".to_string()),
    };
    for j in &c.joins {
        if model.cube(&j.name).is_none() {
            ck.report(Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(&j.name), key: None, nth: 0 },
                format!("cube `{}`: join to unknown cube `{}`{}", c.name, j.name, did_you_mean(&j.name, cube_names)));
            continue;
        }
        check_sql(ck, &j.name, "sql", &j.sql, &dims_only);
    }
    for d in &c.dimensions {
        check_sql(ck, &d.name, "sql", &d.sql, &dims_only);
    }
    for s in &c.segments {
        check_sql(ck, &s.name, "sql", &s.sql, &dims_only);
    }
    for m in &c.measures {
        match (m.kind, &m.sql) {
            (MeasureType::Number, None) => ck.report(
                Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(&m.name), key: None, nth: 0 },
                format!("cube `{}`: measure `{}` of type number needs `sql` (an expression over other measures)", c.name, m.name),
            ),
            (MeasureType::Number, Some(sql)) => {
                let number_refs = |k: Kind| match k {
                    Kind::Measure(_) => Ok(()),
                    Kind::Dimension => Err("a number measure is calculated from other measures and cannot reference a dimension; make it a measure or aggregate it".to_string()),
                    Kind::Segment => Err("segments cannot be referenced here".to_string()),
                };
                check_sql(ck, &m.name, "sql", sql, &number_refs);
            }
            (MeasureType::Count, None) => {}
            (k, None) => ck.report(
                Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(&m.name), key: None, nth: 0 },
                format!("cube `{}`: measure `{}` of type {} needs `sql` (the column or expression to aggregate)", c.name, m.name, k.name()),
            ),
            (_, Some(sql)) => check_sql(ck, &m.name, "sql", sql, &dims_only),
        }
        for f in &m.filters {
            check_sql(ck, &m.name, "filters", &f.sql, &dims_only);
        }
    }
    // Cycles among measures and dimensions that reference their own cube's members.
    let deps = |name: &str| -> Vec<String> {
        let sql = c.measures.iter().find(|m| m.name == name).and_then(|m| m.sql.clone())
            .or_else(|| c.dimensions.iter().find(|d| d.name == name).map(|d| d.sql.clone()));
        sql.and_then(|s| refs::refs(&s).ok()).unwrap_or_default().into_iter().filter_map(|r| match r {
            Ref::Name(n) if names.contains(&n.as_str()) => Some(n),
            Ref::Qualified(q, m) if q == "CUBE" || q == c.name => Some(m),
            _ => None,
        }).collect()
    };
    let mut reported = HashSet::new();
    for (start, _) in &mems {
        let mut stack = vec![(start.to_string(), vec![start.to_string()])];
        while let Some((node, path)) = stack.pop() {
            for d in deps(&node) {
                if d == *start {
                    let mut cycle = path.clone();
                    cycle.push(d.clone());
                    let mut key: Vec<String> = path.clone();
                    key.sort();
                    if reported.insert(key) {
                        ck.report(Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(start), key: Some("sql"), nth: 0 },
                            format!("cube `{}`: reference cycle {}", c.name, cycle.join(" -> ")));
                    }
                } else if !path.contains(&d) && path.len() < 32 {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d, p));
                }
            }
        }
    }
    for h in &c.hierarchies {
        for l in &h.levels {
            if kind_of(&c.name, l) != Some(Kind::Dimension) {
                let dims: Vec<&str> = c.dimensions.iter().map(|d| d.name.as_str()).collect();
                ck.report(Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(&h.name), key: Some("levels"), nth: 0 },
                    format!("cube `{}`, hierarchy `{}`: level `{l}` is not a dimension of the cube{}", c.name, h.name, did_you_mean(l, &dims)));
            }
        }
    }
    for p in &c.pre_aggregations {
        check_pre_aggregation(ck, model, sc, p, cube_names);
    }
}

/// The cubes a rollup of `c` may take dimensions from: `c` and the cubes it reaches through
/// many-to-one (or one-to-one) joins, which do not multiply its rows.
fn rollup_cubes<'m>(model: &'m Model, c: &'m Cube) -> Vec<&'m Cube> {
    let mut out = vec![c];
    let mut i = 0;
    while i < out.len() {
        for j in &out[i].joins {
            if matches!(j.relationship, super::Relationship::ManyToOne | super::Relationship::OneToOne)
                && let Some(next) = model.cube(&j.name)
                && !out.iter().any(|o| o.name == next.name)
            {
                out.push(next);
            }
        }
        i += 1;
    }
    out
}

/// Checks one pre-aggregation of cube `sc`: its members (`member`, `CUBE.member`,
/// `cube.member` of a cube joined many-to-one), its time dimension and granularities, its
/// build range, and that every measure can be rolled up.
fn check_pre_aggregation(ck: &mut Checker, model: &Model, sc: &super::Sourced<Cube>, p: &super::PreAggregation, cube_names: &[&str]) {
    let c = &sc.item;
    let at = |key: Option<&'static str>| Place { file: &sc.file, section: "cubes", owner: &c.name, member: Some(&p.name), key, nth: 0 };
    let who = format!("cube `{}`, pre-aggregation `{}`", c.name, p.name);
    let reachable = rollup_cubes(model, c);
    // Which partitions a lake commit touched is read from the commits of the cube's table.
    if c.sql_table.is_none() {
        ck.report(at(None), format!(
            "{who}: a rollup's cube must read a lake table by name (`sql_table: lake.<table>`), whose commits say which partitions are behind the lake; `{}` is defined by `sql`",
            c.name
        ));
    }
    // The cube and member a reference names, or why it names none.
    let resolve = |r: &str| -> Result<(&Cube, Option<Kind>), String> {
        let (cube, member) = match r.split_once('.') {
            None => (c, r),
            Some(("CUBE", m)) => (c, m),
            Some((name, m)) => match reachable.iter().find(|o| o.name == name) {
                Some(o) => (*o, m),
                None => {
                    let names: Vec<&str> = reachable.iter().map(|o| o.name.as_str()).collect();
                    let why = if cube_names.contains(&name) {
                        format!("cube `{}` does not join `{name}` many-to-one (a rollup's dimensions come from cubes that do not multiply its rows)", c.name)
                    } else {
                        format!("there is no cube `{name}`{}", did_you_mean(name, &names))
                    };
                    return Err(format!("`{r}`: {why}"));
                }
            },
        };
        Ok((cube, members(cube).into_iter().find(|(n, _)| *n == member).map(|(_, k)| k)))
    };
    let names_of = |cube: &Cube, want: fn(&Kind) -> bool| -> Vec<String> {
        members(cube).into_iter().filter(|(_, k)| want(k)).map(|(n, _)| n.to_string()).collect()
    };
    for m in &p.measures {
        match resolve(m) {
            Err(e) => ck.report(at(Some("measures")), format!("{who}: {e}")),
            Ok((cube, _)) if cube.name != c.name => ck.report(at(Some("measures")), format!(
                "{who}: `{m}` is a member of `{}`: a rollup's measures are its own cube's (add the rollup to `{}`)", cube.name, cube.name
            )),
            Ok((cube, Some(Kind::Measure(_)))) => {
                let member = m.rsplit('.').next().unwrap_or(m);
                if let Some(why) = not_rollable(cube, member) {
                    ck.report(at(Some("measures")), format!("{who}: measure `{m}` cannot be rolled up: {why}"));
                }
            }
            Ok((cube, _)) => {
                let ms = names_of(cube, |k| matches!(k, Kind::Measure(_)));
                let ms: Vec<&str> = ms.iter().map(String::as_str).collect();
                ck.report(at(Some("measures")), format!("{who}: `{m}` is not a measure{}", did_you_mean(m.rsplit('.').next().unwrap_or(m), &ms)));
            }
        }
    }
    for d in p.dimensions.iter().chain(p.time_dimension.iter()) {
        let key = if p.time_dimension.as_ref() == Some(d) { "time_dimension" } else { "dimensions" };
        match resolve(d) {
            Err(e) => ck.report(at(Some(key)), format!("{who}: {e}")),
            Ok((_, Some(Kind::Dimension))) => {}
            Ok((cube, _)) => {
                let ds = names_of(cube, |k| *k == Kind::Dimension);
                let ds: Vec<&str> = ds.iter().map(String::as_str).collect();
                ck.report(at(Some(key)), format!("{who}: `{d}` is not a dimension{}", did_you_mean(d.rsplit('.').next().unwrap_or(d), &ds)));
            }
        }
    }
    for sg in &p.segments {
        match resolve(sg) {
            Err(e) => ck.report(at(Some("segments")), format!("{who}: {e}")),
            Ok((_, Some(Kind::Segment))) => {}
            Ok(_) => ck.report(at(Some("segments")), format!("{who}: `{sg}` is not a segment")),
        }
    }
    match &p.time_dimension {
        Some(td) => {
            let member = td.rsplit('.').next().unwrap_or(td);
            if let Ok((cube, Some(Kind::Dimension))) = resolve(td)
                && cube.dimensions.iter().any(|d| d.name == member && d.kind != super::DimensionType::Time)
            {
                ck.report(at(Some("time_dimension")), format!("{who}: time_dimension `{td}` is not of type time"));
            }
            match (p.granularity, p.partition_granularity) {
                (None, _) => ck.report(at(Some("time_dimension")), format!("{who}: a time_dimension needs a granularity")),
                (_, Some(super::Granularity::Hour)) => ck.report(at(Some("partition_granularity")), format!(
                    "{who}: partition_granularity `hour` is finer than a rollup partition can be (partitions are named by the day they start): use day or coarser"
                )),
                (Some(g), Some(pg)) if !g.rolls_into(pg) => ck.report(at(Some("partition_granularity")), format!(
                    "{who}: a `{}` partition does not hold whole `{}` periods (a {} may straddle two {}s): use a partition_granularity the granularity rolls up into",
                    pg.name(), g.name(), g.name(), pg.name()
                )),
                _ => {}
            }
        }
        None => {
            for (key, set) in [
                ("granularity", p.granularity.is_some()),
                ("partition_granularity", p.partition_granularity.is_some()),
                ("build_range_start", p.build_range_start.is_some()),
                ("build_range_end", p.build_range_end.is_some()),
            ] {
                if set {
                    ck.report(at(Some(key)), format!("{who}: `{key}` needs a time_dimension"));
                }
            }
        }
    }
    for (key, range) in [("build_range_start", &p.build_range_start), ("build_range_end", &p.build_range_end)] {
        if let Some(r) = range
            && let Err(e) = Parser::new(&PostgreSqlDialect {}).try_with_sql(&r.sql).and_then(|mut p| p.parse_statements())
        {
            ck.report(at(Some(key)), format!("{who}: `{key}` does not parse: {e}"));
        }
    }
}

/// Why a measure of `cube` cannot be rolled up, if it cannot: a `number` measure must be an
/// expression over other measures (`{transactions} / NULLIF({footfall}, 0)`), whose leaves a
/// rollup stores; one over raw columns or with its own aggregates cannot be recomputed from
/// them. Every other type is stored as its mergeable leaves (sums, counts, min, max, sets of
/// distinct keys).
fn not_rollable(cube: &Cube, measure: &str) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
    use std::ops::ControlFlow;
    let m = cube.measures.iter().find(|m| m.name == measure)?;
    if m.kind != MeasureType::Number {
        return None;
    }
    let sql = m.sql.as_deref()?;
    let plain = with_placeholders(sql).ok()?;
    let expr = Parser::new(&PostgreSqlDialect {}).try_with_sql(&plain).and_then(|mut p| p.parse_expr()).ok()?;
    struct Raw(Option<String>);
    impl Visitor for Raw {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let found = match e {
                Expr::Identifier(i) if !i.value.starts_with("ref_") => Some(format!("it reads the column `{}`", i.value)),
                Expr::CompoundIdentifier(ids) if !ids.iter().all(|i| i.value.starts_with("ref_") || i.value == "cube_") => {
                    Some(format!("it reads the column `{}`", ids.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(".")))
                }
                Expr::Function(f)
                    if matches!(f.name.to_string().to_ascii_lowercase().as_str(), "sum" | "count" | "avg" | "min" | "max" | "stddev" | "variance" | "percentile_cont" | "median" | "array_agg" | "string_agg") =>
                {
                    Some(format!("it aggregates with `{}`", f.name))
                }
                _ => None,
            };
            match found {
                Some(why) => {
                    self.0 = Some(why);
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(()),
            }
        }
    }
    let mut raw = Raw(None);
    let _ = expr.visit(&mut raw);
    raw.0.map(|why| format!("{why}; write a `number` measure over other measures ({{revenue}} / NULLIF({{transactions}}, 0)) so that a rollup can recompute it"))
}
