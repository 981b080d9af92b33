//! Cube definition validation: one test per class of mistake, with the message a user sees.

use lakecube::model::Model;

fn problems(yaml: &str) -> Vec<String> {
    match Model::from_texts(&[("m.yaml", yaml)]) {
        Ok(_) => vec![],
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

const BASE: &str = "cubes:
  - name: traffic
    sql_table: lake.traffic
    joins:
      - name: stores
        relationship: many_to_one
        sql: \"{CUBE}.store_id = {stores.store_id}\"
    dimensions:
      - name: period
        sql: ts
        type: time
    measures:
      - name: footfall
        sql: footfall
        type: sum
      - name: transactions
        sql: transactions
        type: sum
      - name: conversion
        sql: \"{transactions} / NULLIF({footfall}, 0)\"
        type: number
  - name: stores
    sql_table: lake.stores
    dimensions:
      - name: store_id
        sql: store_id
        type: number
        primary_key: true
      - name: region
        sql: region
        type: string
";

#[test]
fn the_shipped_definitions_and_the_base_are_valid() {
    assert_eq!(problems(BASE), Vec::<String>::new());
    let text = std::fs::read_to_string("cube-defs/retail.yaml").unwrap();
    assert_eq!(problems(&text), Vec::<String>::new());
}

#[test]
fn unknown_key_with_position_and_suggestion() {
    let p = problems(&BASE.replace("        type: time", "        typ: time"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("m.yaml:11:9: "), "{p:?}");
    assert!(p[0].contains("unknown key `typ`, did you mean `type`?"), "{p:?}");
}

#[test]
fn unknown_member_reference() {
    let p = problems(&BASE.replace("{transactions} / NULLIF", "{transaction} / NULLIF"));
    assert_eq!(p, vec!["m.yaml:20:9: cube `traffic`, `conversion`: unknown member `transaction` of cube `traffic`, did you mean `transactions`?"]);
}

#[test]
fn unknown_cube_reference() {
    let p = problems(&BASE.replace("{stores.store_id}", "{store.store_id}"));
    assert_eq!(p, vec!["m.yaml:7:9: cube `traffic`, `stores`: unknown cube `store` in `{store.store_id}`, did you mean `stores`?"]);
    let p = problems(&BASE.replace("      - name: stores\n        relationship", "      - name: shops\n        relationship"));
    assert!(p[0].contains("join to unknown cube `shops`"), "{p:?}");
}

#[test]
fn reference_cycle() {
    let yaml = BASE.replace("        sql: transactions\n", "        sql: \"{conversion}\"\n        \n").replace("type: sum\n      - name: conversion", "type: number\n      - name: conversion");
    let p = problems(&yaml);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("reference cycle transactions -> conversion -> transactions"), "{p:?}");
}

#[test]
fn number_measure_referencing_a_dimension() {
    let p = problems(&BASE.replace("{transactions} / NULLIF({footfall}, 0)", "{transactions} / {period}"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("a number measure is calculated from other measures and cannot reference a dimension"), "{p:?}");
}

#[test]
fn duplicate_names() {
    let p = problems(&BASE.replace("      - name: transactions\n", "      - name: footfall\n"));
    assert_eq!(p, vec!["m.yaml:16:9: cube `traffic`: duplicate member name `footfall`", "m.yaml:20:9: cube `traffic`, `conversion`: unknown member `transactions` of cube `traffic`"]
        .iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let twice = format!("{BASE}  - name: stores\n    sql_table: lake.stores\n");
    assert!(problems(&twice).iter().any(|m| m.contains("duplicate name `stores`")));
}

#[test]
fn type_mismatches() {
    // A bad enum value.
    let p = problems(&BASE.replace("type: time", "type: timestamp"));
    assert!(p[0].contains("unknown variant `timestamp`"), "{p:?}");
    // A sum without sql, a row-level SQL that references a measure.
    let p = problems(&BASE.replace("        sql: footfall\n        type: sum", "        type: sum"));
    assert!(p[0].contains("measure `footfall` of type sum needs `sql`"), "{p:?}");
    let p = problems(&BASE.replace("        sql: ts\n", "        sql: \"{footfall}\"\n"));
    assert!(p[0].contains("row-level SQL may reference dimensions, not measures"), "{p:?}");
}

#[test]
fn sql_that_does_not_parse() {
    let p = problems(&BASE.replace("NULLIF({footfall}, 0)", "NULLIF({footfall}, 0"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("m.yaml:20:9: cube `traffic`, `conversion`: sql `{transactions} / NULLIF({footfall}, 0` does not parse"), "{p:?}");
}

#[test]
fn views_check_join_paths_and_members() {
    let view = |body: &str| format!("{BASE}views:\n  - name: retail\n    cubes:\n{body}");
    assert_eq!(problems(&view("      - join_path: traffic\n        includes: \"*\"\n      - join_path: traffic.stores\n        includes: [region]\n")), Vec::<String>::new());
    let p = problems(&view("      - join_path: traffic.store\n        includes: [region]\n"));
    assert!(p[0].contains("cube `traffic` has no join to `store` (join_path `traffic.store`), did you mean `stores`?"), "{p:?}");
    let p = problems(&view("      - join_path: traffic.stores\n        includes: [regoin]\n"));
    assert!(p[0].contains("cube `stores` has no member `regoin`, did you mean `region`?"), "{p:?}");
    let p = problems(&view("      - join_path: traffic\n        includes: \"*\"\n      - join_path: traffic.stores\n        includes: [region, store_id]\n      - join_path: stores\n        includes: [region]\n"));
    assert!(p.iter().any(|m| m.contains("member name `region` comes from both")), "{p:?}");
}

#[test]
fn hierarchies_and_pre_aggregations_reference_real_members() {
    let yaml = BASE.replace("      - name: region\n        sql: region\n        type: string\n",
        "      - name: region\n        sql: region\n        type: string\n    hierarchies:\n      - name: geo\n        levels: [region, city]\n");
    let p = problems(&yaml);
    assert!(p[0].contains("hierarchy `geo`: level `city` is not a dimension"), "{p:?}");
    let yaml = BASE.replace("    measures:\n", "    pre_aggregations:\n      - name: daily\n        measures: [footfal]\n        time_dimension: period\n    measures:\n");
    let p = problems(&yaml);
    assert!(p.iter().any(|m| m.contains("`footfal` is not a measure, did you mean `footfall`?")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("a time_dimension needs a granularity")), "{p:?}");
}

/// Rollups name members as Cube does (`member`, `CUBE.member`, `stores.region` through a
/// many-to-one join), hold whole periods in a partition, and store only what can be rolled up.
#[test]
fn pre_aggregations_name_rollable_members_and_whole_periods() {
    let with = |rollups: &str| {
        let extra = "      - name: raw_ratio\n        sql: \"SUM(transactions) / SUM(footfall)\"\n        type: number\n";
        let yaml = BASE.replacen("    measures:\n", &format!("    pre_aggregations:\n{rollups}    measures:\n{extra}"), 1);
        problems(&yaml)
    };
    let good = "      - name: daily_region\n        measures: [CUBE.footfall, traffic.conversion]\n        dimensions: [stores.region]\n        time_dimension: CUBE.period\n        granularity: day\n        partition_granularity: month\n        build_range_start: { sql: \"SELECT now() - INTERVAL '2 years'\" }\n";
    assert_eq!(with(good), Vec::<String>::new());
    let p = with("      - name: bad\n        measures: [raw_ratio, stores.store_id]\n        dimensions: [store.region, stores.regoin]\n        time_dimension: period\n        granularity: week\n        partition_granularity: month\n");
    let expect = [
        "pre-aggregation `bad`: measure `raw_ratio` cannot be rolled up: it aggregates with `SUM`",
        "pre-aggregation `bad`: `stores.store_id` is a member of `stores`: a rollup's measures are its own cube's",
        "pre-aggregation `bad`: `store.region`: there is no cube `store`, did you mean `stores`?",
        "pre-aggregation `bad`: `stores.regoin` is not a dimension, did you mean `region`?",
        "pre-aggregation `bad`: a `month` partition does not hold whole `week` periods",
    ];
    for e in expect {
        assert!(p.iter().any(|m| m.contains(e)), "missing {e:?} in {p:?}");
    }
    // Each problem points at the line of its key.
    assert!(p.iter().any(|m| m.starts_with("m.yaml:") && m.contains("partition does not hold")), "{p:?}");
    let p = with("      - name: hourly\n        measures: [footfall]\n        time_dimension: period\n        granularity: hour\n        partition_granularity: hour\n");
    assert!(p.iter().any(|m| m.contains("partition_granularity `hour` is finer than a rollup partition can be")), "{p:?}");
    let by_sql = BASE.replacen("    sql_table: lake.traffic\n", "    sql: \"SELECT * FROM lake.traffic\"\n", 1)
        .replacen("    measures:\n", "    pre_aggregations:\n      - name: daily\n        measures: [footfall]\n        time_dimension: period\n        granularity: day\n    measures:\n", 1);
    let p = problems(&by_sql);
    assert!(p.iter().any(|m| m.contains("pre-aggregation `daily`: a rollup's cube must read a lake table by name")), "{p:?}");
    let p = with("      - name: flat\n        measures: [footfall]\n        granularity: day\n");
    assert!(p.iter().any(|m| m.contains("`granularity` needs a time_dimension")), "{p:?}");
}

#[test]
fn the_checked_in_json_schema_is_current() {
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("docs/cube-defs.schema.json").unwrap()).unwrap();
    assert_eq!(checked_in, lakecube::model::json_schema(), "run `lakecube schema > docs/cube-defs.schema.json`");
    assert!(checked_in["$defs"]["Measure"]["properties"]["type"].is_object());
}

/// Access policies name real roles, members and operators; a view does not include a cube
/// with policies of its own (they would not apply through it). Each problem at its line.
#[test]
fn access_policies_are_checked() {
    let view = |policy: &str| {
        format!("{BASE}views:\n  - name: retail\n    access_policy:\n{policy}    cubes:\n      - join_path: traffic\n        includes: \"*\"\n      - join_path: traffic.stores\n        includes: [region]\n")
    };
    let ok = "      - group: manager\n        row_level:\n          filters:\n            - member: region\n              operator: equals\n              values: [\"{ userAttributes.region }\"]\n";
    assert_eq!(problems(&view(ok)), Vec::<String>::new());
    let p = problems(&view("      - group: manager\n        row_level:\n          filters:\n            - member: regoin\n              operator: equals\n              values: [x]\n"));
    assert!(p[0].contains("access policy 1: `retail` has no member `regoin`, did you mean `region`?") && p[0].contains(".yaml:"), "{p:?}");
    let p = problems(&view("      - group: manager\n        row_level:\n          filters:\n            - member: footfall\n              operator: gt\n              values: [1, 2]\n"));
    assert!(p.iter().any(|m| m.contains("`footfall` is a measure; row filters are over dimensions")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("`gt` on `footfall` takes one value, not 2")), "{p:?}");
    let p = problems(&view("      - member_level:\n          excludes: [footfal]\n"));
    assert!(p.iter().any(|m| m.contains("says whom it is for")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("has no member `footfal`, did you mean `footfall`?")), "{p:?}");
    let p = problems(&view("      - group: manager\n        row_level:\n          filters:\n            - member: region\n              operator: equals\n              values: [\"{ user.region }\"]\n"));
    assert!(p.iter().any(|m| m.contains("is not a user attribute")), "{p:?}");
    let p = problems(&view("      - group: manager\n        row_level:\n          filters:\n            - member: region\n              operator: like\n              values: [x]\n"));
    assert!(p.iter().any(|m| m.contains("unknown variant `like`")), "{p:?}");
    // A cube's own policy inside a view.
    let cube_policy = BASE.replacen("    measures:\n", "    access_policy:\n      - group: manager\n    measures:\n", 1);
    let p = problems(&format!("{cube_policy}views:\n  - name: retail\n    cubes:\n      - join_path: traffic\n        includes: \"*\"\n"));
    assert!(p.iter().any(|m| m.contains("includes cube `traffic`, which has an access_policy")), "{p:?}");
}
