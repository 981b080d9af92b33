//! Access policies (issue 17): each user plans in a catalog of their own, with only the tables
//! and members their roles' policies give them, and only the rows; the row filter holds under
//! client predicates that could fail, with rollups on and off; the raw lake is only for roles
//! granted it. Answers are checked against the unrestricted engine's answer to the same query
//! over the rows the policy allows.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use lakecube::config::{RoleSettings, UserAccess};
use lakecube::engine::Engine;
use lakecube::pg::settings::SessionInfo;
use lakecube::storage::Lake;

use crate::common::*;

/// The shipped retail view with policies: head office sees all; a regional manager their
/// region; a partner their stores without revenue; an engineer all, and the lake.
const POLICIES: &str = r#"    access_policy:
      - groups: [head_office, engineer]
      - group: regional_manager
        row_level:
          filters:
            - member: region
              operator: equals
              values: ["{ userAttributes.region }"]
      - group: partner
        member_level:
          excludes: [revenue]
        row_level:
          filters:
            - member: store_code
              operator: equals
              values: ["{ userAttributes.stores }"]
"#;

fn cube_defs_with_policies(dir: &Path) -> std::path::PathBuf {
    let defs = dir.join("cube-defs");
    std::fs::create_dir_all(&defs).unwrap();
    let text = std::fs::read_to_string("cube-defs/retail.yaml").unwrap();
    let at = text.find("views:\n  - name: retail\n").expect("the retail view");
    let head = &text[..at];
    let view = &text[at..];
    let line_end = view.find("    description:").unwrap();
    let with = format!("{head}{}{POLICIES}{}", &view[..line_end], &view[line_end..]);
    std::fs::write(defs.join("retail.yaml"), with).unwrap();
    defs
}

/// A statement over `retail` with the regional manager's filter added (the statements here
/// filter with AND only).
fn with_region(q: &str, region: &str) -> String {
    if q.contains(" WHERE ") {
        q.replacen(" WHERE ", &format!(" WHERE region = '{region}' AND "), 1)
    } else {
        q.replacen("FROM retail", &format!("FROM retail WHERE region = '{region}'"), 1)
    }
}

fn user(roles: &[&str], attributes: &[(&str, &[&str])]) -> UserAccess {
    UserAccess {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
    }
}

async fn answer(engine: &Engine, user: &str, sql: &str, rollups: bool) -> Result<Vec<Vec<String>>, String> {
    let mut session = SessionInfo { user: user.to_string(), ..Default::default() };
    session.settings.set("lakecube.rollups", if rollups { "on" } else { "off" }).unwrap();
    let planned = engine.plan_sql(sql, &session).await.map_err(|e| format!("{}: {}", e.kind.sqlstate(), e.message))?.expect("a statement");
    let (_, mut stream) = engine.execute_planned(planned).await.map_err(|e| format!("{}: {}", e.kind.sqlstate(), e.message))?;
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        out.extend(batch_rows(&b.map_err(|e| e.to_string())?));
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_reads_only_what_their_policies_give() {
    let dir = fresh_dir("access-policies");
    generate_into(&dir, &lakecube::datagen::Preset::Tiny.params());
    let defs = cube_defs_with_policies(&dir);
    let model = lakecube::model::load_dir(&defs).unwrap_or_else(|p| panic!("{p:?}"));
    let engine = Engine::open(Lake::open(dir.to_str().unwrap(), false).unwrap(), Some(&model)).await.unwrap();
    for def in engine.rollups().defs().to_vec() {
        engine.rollups().refresh(engine.context(), &def, false, &|_, _, _| {}).await.unwrap();
    }
    // The unrestricted answers, before any user is configured.
    let regions = answer(&engine, "lakecube", "SELECT DISTINCT region FROM lake.stores", false).await.unwrap();
    assert!(regions.len() >= 2, "{regions:?}");
    let (mine, other) = (regions[0][0].clone(), regions[1][0].clone());
    let stores = answer(&engine, "lakecube", &format!("SELECT store_code FROM lake.stores WHERE region <> '{mine}' ORDER BY 1 LIMIT 1"), false).await.unwrap();
    let partner_store = stores[0][0].clone();

    let mut users = BTreeMap::new();
    users.insert("boss".to_string(), user(&["head_office"], &[]));
    users.insert("marc".to_string(), user(&["regional_manager"], &[("region", &[mine.as_str()])]));
    users.insert("lea".to_string(), user(&["partner"], &[("stores", &[partner_store.as_str()])]));
    users.insert("eng".to_string(), user(&["engineer"], &[]));
    users.insert("nobody".to_string(), user(&["visitor"], &[]));
    users.insert("lost".to_string(), user(&["regional_manager"], &[]));
    let mut roles = BTreeMap::new();
    roles.insert("engineer".to_string(), RoleSettings { lake: true });
    let queries = [
        "SELECT region, SUM(footfall), MEASURE(conversion) FROM retail GROUP BY 1",
        "SELECT store_code, date_trunc('month', period) AS m, SUM(transactions), MEASURE(store_count) FROM retail GROUP BY 1, 2",
        "SELECT department, SUM(units) FROM retail WHERE period >= '2025-01-01' GROUP BY 1",
        "SELECT COUNT(*) FROM retail",
        "SELECT MIN(period), MAX(period) FROM retail",
        "SELECT region, store, footfall FROM retail ORDER BY 1, 2, 3 LIMIT 50",
    ];
    let mut expected: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for q in queries {
        let restricted = with_region(q, &mine);
        expected.push((q.to_string(), answer(&engine, "lakecube", &restricted, false).await.unwrap()));
    }
    let all_footfall = answer(&engine, "lakecube", "SELECT SUM(footfall) FROM retail", false).await.unwrap();
    // Random cube queries of every shape (the rollups test's generator), each with the
    // region's filter added: what the manager must get for the query without it.
    let n = std::env::var("LAKECUBE_ACCESS_QUERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let mut g = crate::rollups::Generator { rng: rand::SeedableRng::seed_from_u64(17) };
    let mut random = Vec::new();
    for _ in 0..n {
        let q = g.query();
        let filtered = with_region(&q, &mine);
        let want = answer(&engine, "lakecube", &filtered, false).await.unwrap_or_else(|e| panic!("{filtered}: {e}"));
        random.push((q, want));
    }
    engine.set_access(users, roles);
    for (i, (q, want)) in random.iter().enumerate() {
        for rollups in [true, false] {
            let got = answer(&engine, "marc", q, rollups).await.unwrap_or_else(|e| panic!("query {i}: {q}: {e}"));
            assert_eq!(got.len(), want.len(), "query {i} (rollups {rollups}): {q}\ngot:  {got:?}\nwant: {want:?}");
            for (a, b) in got.iter().zip(want) {
                assert!(a.iter().zip(b).all(|(x, y)| crate::rollups::same(x, y)), "query {i} (rollups {rollups}): {q}\ngot:  {a:?}\nwant: {b:?}");
            }
        }
    }

    // The regional manager: their region's rows only, on every query shape, rollups on or off.
    for (q, want) in &expected {
        for rollups in [true, false] {
            assert_eq!(&answer(&engine, "marc", q, rollups).await.unwrap(), want, "marc, rollups {rollups}: {q}");
        }
    }
    // A predicate that fails on another region's rows never runs on them.
    let probe = format!("SELECT COUNT(*) FROM retail WHERE 1 / (CASE WHEN region = '{other}' THEN 0 ELSE 1 END) = 1");
    for rollups in [true, false] {
        assert!(answer(&engine, "marc", &probe, rollups).await.is_ok(), "the probe failed for marc (rollups {rollups})");
        assert!(answer(&engine, "boss", &probe, rollups).await.is_err(), "the probe must fail where the other region is visible");
    }
    // The data here cannot make the optimizer run the probe first without the barrier (it
    // evaluates the policy's conjunct first), so the plan is checked too: the probe is
    // filtered above the barrier, the policy below it.
    let plan = answer(&engine, "marc", &format!("EXPLAIN {probe}"), false).await.unwrap();
    let physical = plan.iter().find(|r| r[0] == "physical_plan").map(|r| r[1].clone()).unwrap_or_default();
    let line = |needle: &str| physical.lines().position(|l| l.contains(needle));
    let (barrier, probe_at, policy_at) = (line("PolicyBarrierExec"), line("CASE WHEN"), line(&format!("= {mine}")));
    assert!(barrier.is_some() && probe_at < barrier && barrier < policy_at, "{physical}");
    // EXPLAIN ANALYZE counts rows before the policy's filter; VERBOSE shows base columns:
    // only for roles that see the lake.
    for sql in ["EXPLAIN ANALYZE SELECT COUNT(*) FROM retail", "EXPLAIN VERBOSE SELECT SUM(footfall) FROM retail", "EXPLAIN (ANALYZE, FORMAT TEXT) SELECT 1"] {
        let e = answer(&engine, "marc", sql, false).await.unwrap_err();
        assert!(e.starts_with("42501"), "{sql}: {e}");
        assert!(answer(&engine, "eng", sql, false).await.is_ok(), "{sql}");
    }
    // Head office: everything, the lake excepted.
    assert_eq!(answer(&engine, "boss", "SELECT SUM(footfall) FROM retail", true).await.unwrap(), all_footfall);
    let lake = answer(&engine, "boss", "SELECT COUNT(*) FROM lake.traffic", false).await.unwrap_err();
    assert!(lake.starts_with("42P01"), "{lake}");
    assert!(answer(&engine, "eng", "SELECT COUNT(*) FROM lake.traffic", false).await.is_ok());
    // The partner: their store, no revenue (nor what is computed from it).
    let theirs = answer(&engine, "lea", "SELECT DISTINCT store_code FROM retail", true).await.unwrap();
    assert_eq!(theirs, vec![vec![partner_store.clone()]]);
    for hidden in ["SELECT SUM(revenue) FROM retail", "SELECT MEASURE(average_basket) FROM retail"] {
        let e = answer(&engine, "lea", hidden, true).await.unwrap_err();
        assert!(e.starts_with("42703"), "{hidden}: {e}");
    }
    let columns = answer(&engine, "lea", "SELECT column_name FROM information_schema.columns WHERE table_name = 'retail'", false).await.unwrap();
    let columns: Vec<&str> = columns.iter().map(|r| r[0].as_str()).collect();
    assert!(columns.contains(&"footfall") && !columns.contains(&"revenue") && !columns.contains(&"average_basket"), "{columns:?}");
    // No role of theirs: the table does not exist for them; nor for a manager without a region.
    let e = answer(&engine, "nobody", "SELECT SUM(footfall) FROM retail", true).await.unwrap_err();
    assert!(e.starts_with("42P01"), "{e}");
    let tables = answer(&engine, "nobody", "SELECT table_name FROM information_schema.tables WHERE table_schema IN ('public', 'lake')", false).await.unwrap();
    assert!(tables.is_empty(), "{tables:?}");
    assert_eq!(answer(&engine, "lost", "SELECT COUNT(*) FROM retail", true).await.unwrap(), vec![vec!["0".to_string()]]);
}

/// psql's one-line answers (`-At`), as `user` with `password`.
fn psql_as(port: u16, user: &str, password: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "lakecube", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

/// The same policies through `lakecube serve --config` and psql, as an operator sets them up:
/// users with roles and attributes in the config file, `lakecube user add` changing a
/// password without touching the roles, `lakecube policy explain`.
#[test]
fn psql_users_read_what_the_config_gives_them() {
    let dir = fresh_dir("access-serve");
    generate_into(&dir, &lakecube::datagen::Preset::Tiny.params());
    let defs = cube_defs_with_policies(&dir);
    let region = String::from_utf8(query_csv(&dir, "SELECT MIN(region) FROM lake.stores").into_bytes()).unwrap();
    let region = region.lines().nth(1).unwrap().trim().to_string();
    let verifier = |p: &str| lakecube::frontend::auth::Verifier::new(p).to_text();
    let config = dir.join("lakecube.yaml");
    std::fs::write(
        &config,
        format!(
            "users:\n  marc:\n    password: \"{}\"\n    roles: [regional_manager]\n    attributes:\n      region: \"{region}\"\n  lea:\n    password: \"{}\"\n    roles: [partner]\n    attributes:\n      stores: [nowhere]\n",
            verifier("old"),
            verifier("lea-pw")
        ),
    )
    .unwrap();
    // A new password for marc: his roles and attributes stay.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lakecube"))
        .args(["user", "add", "marc", "--password-stdin", "--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"marc-pw").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("roles: [regional_manager]") && !text.contains(&verifier("old")[..30]), "{text}");

    let o = lakecube(&["policy", "explain", "--user", "marc", "--config", config.to_str().unwrap(), "--cube-defs", defs.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let explained = stdout(&o);
    assert!(explained.contains(&format!("retail: rows where (region equals [{region}])")) && explained.contains("lake.*: not visible"), "{explained}");

    let o = lakecube(&["policy", "explain", "--user", "lea", "--config", config.to_str().unwrap(), "--cube-defs", defs.to_str().unwrap()], &[]);
    assert!(stdout(&o).contains("(hidden: revenue, average_basket, sales_per_visitor)"), "{}", stdout(&o));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_lakecube"))
        .args(["serve", "--lake", dir.to_str().unwrap(), "--cube-defs", defs.to_str().unwrap(), "--config", config.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--rollups-refresh", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the server did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let marc = psql_as(port, "marc", "marc-pw", "SELECT DISTINCT region FROM retail");
    let lea_columns = psql_as(port, "lea", "lea-pw", "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'retail'");
    let lea_rows = psql_as(port, "lea", "lea-pw", "SELECT COUNT(*) FROM retail");
    let lake = psql_as(port, "marc", "marc-pw", "SELECT COUNT(*) FROM lake.traffic");
    let wrong = psql_as(port, "marc", "old", "SELECT 1");
    // The other protocol paths, as a driver takes them: simple (two statements in one
    // message), extended with a parameter, a prepared statement run twice, a cursor; and the
    // error probe with the hidden region as a parameter.
    let paths = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!("host=127.0.0.1 port={port} user=marc password=marc-pw dbname=lakecube");
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut seen: Vec<(String, Vec<String>)> = Vec::new();
        let texts = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
            rows.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or_default().to_string()),
                    _ => None,
                })
                .collect()
        };
        seen.push(("simple".into(), texts(c.simple_query("SELECT DISTINCT region FROM retail; SELECT DISTINCT region FROM retail WHERE period >= '2025-01-01'").await.unwrap())));
        let rows = c.query("SELECT DISTINCT region FROM retail WHERE store_code <> $1", &[&"none"]).await.unwrap();
        seen.push(("extended".into(), rows.iter().map(|r| r.get::<_, String>(0)).collect()));
        let st = c.prepare("SELECT region, SUM(footfall) FROM retail GROUP BY 1").await.unwrap();
        for _ in 0..2 {
            let rows = c.query(&st, &[]).await.unwrap();
            seen.push(("prepared".into(), rows.iter().map(|r| r.get::<_, String>(0)).collect()));
        }
        seen.push((
            "cursor".into(),
            texts(c.simple_query("BEGIN; DECLARE c CURSOR FOR SELECT DISTINCT region FROM retail; FETCH 100 FROM c; CLOSE c; COMMIT").await.unwrap()),
        ));
        let probe = c.query("SELECT COUNT(*) FROM retail WHERE 1 / (CASE WHEN region <> $1 THEN 0 ELSE 1 END) = 1", &[&region.as_str()]).await;
        seen.push(("probe".into(), vec![probe.map(|r| r[0].get::<_, i64>(0).to_string()).unwrap_or_else(|e| e.to_string())]));
        seen
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(marc.status.success(), "{}", stderr(&marc));
    assert_eq!(stdout(&marc).trim(), region);
    let columns = stdout(&lea_columns);
    assert!(columns.contains("footfall") && !columns.contains("revenue"), "{columns}");
    // A store that does not exist: no row.
    assert_eq!(stdout(&lea_rows).trim(), "0", "{}", stderr(&lea_rows));
    assert!(!lake.status.success() && stderr(&lake).contains("not found"), "{}", stderr(&lake));
    assert!(!wrong.status.success());
    for (path, regions) in &paths {
        if path == "probe" {
            // Rows of other regions would divide by zero; the manager's never do.
            assert!(regions[0].parse::<i64>().is_ok(), "the probe failed: {regions:?}");
        } else {
            assert!(!regions.is_empty() && regions.iter().all(|r| *r == region), "{path}: {regions:?}");
        }
    }
}
