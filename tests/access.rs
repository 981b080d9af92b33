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
    with_filter(q, &format!("region = '{region}'"))
}

/// A statement over `retail` with a policy's condition added to its filters.
fn with_filter(q: &str, condition: &str) -> String {
    if q.contains(" WHERE ") {
        q.replacen(" WHERE ", &format!(" WHERE {condition} AND "), 1)
    } else {
        q.replacen("FROM retail", &format!("FROM retail WHERE {condition}"), 1)
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
    roles.insert("engineer".to_string(), RoleSettings { lake: true, ..Default::default() });
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

/// A config file in `dir` from `yaml`, each `PW` in it the verifier of the password `pw`.
fn config_file(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let config = dir.join("lakecube.yaml");
    std::fs::write(&config, yaml.replace("PW", &lakecube::frontend::auth::Verifier::new("pw").to_text())).unwrap();
    config
}

/// A fresh tiny lake, the policies' cube definitions beside it, and its rollups built.
fn tiny_lake_with_policies_and_rollups(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = fresh_dir(name);
    generate_into(&dir, &lakecube::datagen::Preset::Tiny.params());
    let defs = cube_defs_with_policies(&dir);
    let o = lakecube(&["rollups", "build", "--full", "--lake", dir.to_str().unwrap(), "--cube-defs", defs.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, defs)
}

/// `lakecube serve` over `dir` with these cube definitions and config, on a free port, once
/// it accepts connections.
fn serve(dir: &Path, defs: &Path, config: &Path) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_lakecube"))
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
    (server, port)
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

    let (mut server, port) = serve(&dir, &defs, &config);
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

/// What one statement gave a client: its rows (first column), or its error as
/// `SQLSTATE: message (hint)`.
async fn outcome(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<String>, String> {
    match c.simple_query(sql).await {
        Ok(messages) => Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })
            .collect()),
        Err(e) => Err(match e.as_db_error() {
            Some(d) => format!("{}: {} ({})", d.code().code(), d.message(), d.hint().unwrap_or_default()),
            None => e.to_string(),
        }),
    }
}

/// What a probe must give.
enum Want {
    /// These rows (first column), in this order.
    Rows(Vec<String>),
    /// An error with this SQLSTATE.
    Code(&'static str),
    /// Any answer: only that it reveals no secret.
    Anything,
}

/// Side channels (issue 17): statements a restricted user could try to learn of hidden rows,
/// members, tables or roles: errors raised on hidden rows, aggregates statistics could
/// answer, catalogs, privilege functions, EXPLAIN, setting knobs, `SET ROLE` and
/// `SET SESSION AUTHORIZATION`, did-you-mean hints. Through `lakecube serve` and
/// tokio-postgres over SCRAM, with rollups built. Besides what each probe must give, no
/// answer names anything the user may not see (another region, another store, a hidden
/// member) unless the statement itself named it.
#[test]
fn side_channel_probes_reveal_nothing() {
    let (dir, defs) = tiny_lake_with_policies_and_rollups("access-probes");
    let first = |sql: &str| query_csv(&dir, sql).lines().skip(1).map(|l| l.trim().to_string()).collect::<Vec<_>>();
    let regions = first("SELECT DISTINCT region FROM lake.stores ORDER BY 1");
    let (mine, others) = (regions[0].clone(), regions[1..].to_vec());
    let stores = first(&format!("SELECT store_code FROM lake.stores WHERE region <> '{mine}' ORDER BY 1"));
    let (lea_store, other_stores) = (stores[0].clone(), stores[1..].to_vec());
    let lea_region = first(&format!("SELECT region FROM lake.stores WHERE store_code = '{lea_store}'"))[0].clone();
    let config = config_file(
        &dir,
        &format!(
            "users:
  boss: {{ password: \"PW\", roles: [head_office] }}
  marc: {{ password: \"PW\", roles: [regional_manager], attributes: {{ region: \"{mine}\" }} }}
  lea: {{ password: \"PW\", roles: [partner], attributes: {{ stores: [\"{lea_store}\"] }} }}
  duo: {{ password: \"PW\", roles: [regional_manager, partner], attributes: {{ region: \"{mine}\", stores: [\"{lea_store}\"] }} }}
  sam: {{ password: \"PW\", roles: [engineer] }}
  nobody: {{ password: \"PW\", roles: [visitor] }}
roles:
  engineer: {{ lake: true }}
"
        ),
    );
    let (mut server, port) = serve(&dir, &defs, &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = |user: &str| {
        let url = format!("host=127.0.0.1 port={port} user={user} password=pw dbname=lakecube");
        async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c
        }
    };
    // Head office's answer with the manager's filter: what the manager's count must be.
    let mine_count = rt.block_on(async { outcome(&connect("boss").await, &format!("SELECT COUNT(*) FROM retail WHERE region = '{mine}'")).await.unwrap() });
    let hidden_members = ["revenue", "average_basket", "sales_per_visitor"];
    let rows = |v: &[&str]| Want::Rows(v.iter().map(|s| s.to_string()).collect());
    let probe_on_other = format!("1 / (CASE WHEN region = '{}' THEN 0 ELSE 1 END) = 1", others[0]);
    let store_probe = format!("1 / (CASE WHEN store_code = '{}' THEN 0 ELSE 1 END) = 1", other_stores[0]);
    let marc_probes: Vec<(String, Want)> = vec![
        ("SELECT DISTINCT region FROM retail".into(), Want::Rows(vec![mine.clone()])),
        ("SELECT COUNT(*) FROM retail".into(), Want::Rows(mine_count.clone())),
        (format!("SELECT COUNT(*) FROM retail WHERE {probe_on_other}"), Want::Rows(mine_count.clone())),
        (format!("WITH x AS (SELECT region FROM retail) SELECT COUNT(*) FROM x WHERE {probe_on_other}"), Want::Rows(mine_count.clone())),
        (format!("SELECT COUNT(*) FROM (SELECT region, footfall FROM retail) s WHERE {probe_on_other}"), Want::Rows(mine_count.clone())),
        (format!("SELECT COUNT(*) FROM retail WHERE CAST(CASE WHEN region = '{}' THEN 'x' ELSE '1' END AS INT) = 1", others[0]), Want::Rows(mine_count.clone())),
        (format!("SELECT region, SUM(footfall) FROM retail WHERE {probe_on_other} GROUP BY 1", ), Want::Anything),
        (format!("SELECT COUNT(*) FROM retail WHERE region = '{}'", others[0]), rows(&["0"])),
        (format!("SELECT COUNT(*) FROM retail WHERE region <> '{mine}'"), rows(&["0"])),
        ("SELECT MIN(region) FROM retail".into(), Want::Rows(vec![mine.clone()])),
        ("SELECT MAX(region) FROM retail".into(), Want::Rows(vec![mine.clone()])),
        ("SELECT region FROM retail GROUP BY region HAVING COUNT(*) > 0 ORDER BY 1".into(), Want::Rows(vec![mine.clone()])),
        ("SELECT string_agg(DISTINCT region, ',') FROM retail".into(), Want::Rows(vec![mine.clone()])),
        ("EXPLAIN SELECT region, SUM(footfall) FROM retail GROUP BY 1".into(), Want::Anything),
        ("EXPLAIN ANALYZE SELECT COUNT(*) FROM retail".into(), Want::Code("42501")),
        ("EXPLAIN VERBOSE SELECT COUNT(*) FROM retail".into(), Want::Code("42501")),
        ("SET datafusion.optimizer.filter_null_join_keys = true".into(), Want::Code("42501")),
        ("SET datafusion.execution.parquet.pushdown_filters = true".into(), Want::Code("42501")),
        ("SELECT set_config('datafusion.optimizer.max_passes', '0', false)".into(), Want::Code("42501")),
        ("SET lakecube.rollups = off; SELECT DISTINCT region FROM retail".into(), Want::Rows(vec![mine.clone()])),
        ("SET ROLE partner".into(), Want::Code("42501")),
        ("SET ROLE head_office".into(), Want::Code("42501")),
        ("SET ROLE no_such_role".into(), Want::Code("22023")),
        ("SET SESSION AUTHORIZATION boss".into(), Want::Code("42501")),
        ("SELECT set_config('role', 'head_office', false)".into(), Want::Code("42501")),
        ("SET ROLE regional_manager; SELECT current_user || '/' || session_user || '/' || current_setting('role')".into(), rows(&["regional_manager/marc/regional_manager"])),
        ("SELECT DISTINCT region FROM retail".into(), Want::Rows(vec![mine.clone()])),
        ("RESET ROLE; SELECT current_user || '/' || current_setting('role')".into(), rows(&["marc/none"])),
        ("SELECT has_table_privilege('retail', 'SELECT')".into(), rows(&["t"])),
        ("SELECT has_table_privilege('lake.traffic', 'SELECT')".into(), rows(&["f"])),
        ("SELECT has_table_privilege('lake.no_such_table', 'SELECT')".into(), rows(&["f"])),
        ("SELECT has_schema_privilege('lake', 'USAGE')".into(), rows(&["f"])),
        ("SELECT has_table_privilege('retail', 'INSERT')".into(), rows(&["f"])),
        // About others, only what the manager sees: the lake is hidden from him, so nothing
        // is said of it (false), though the engineer reads it.
        ("SELECT has_table_privilege('sam', 'lake.traffic', 'SELECT')".into(), rows(&["f"])),
        ("SELECT has_column_privilege('lea', 'retail', 'revenue', 'SELECT')".into(), rows(&["f"])),
        ("SELECT has_column_privilege('boss', 'retail', 'revenue', 'SELECT')".into(), rows(&["t"])),
        ("SELECT has_column_privilege('lea', 'retail', 'footfall', 'SELECT')".into(), rows(&["t"])),
        ("SELECT has_table_privilege('nobody', 'retail', 'SELECT')".into(), rows(&["f"])),
        ("SELECT has_table_privilege(c.oid, 'SELECT') FROM pg_class c WHERE c.relname = 'retail'".into(), rows(&["t"])),
        ("SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'lake'".into(), rows(&["0"])),
        ("SELECT COUNT(*) FROM pg_namespace WHERE nspname = 'lake'".into(), rows(&["0"])),
        ("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'lake'".into(), rows(&["0"])),
        ("SELECT COUNT(*) FROM lake.traffic".into(), Want::Code("42P01")),
        ("SELECT COUNT(*) FROM traffic".into(), Want::Code("42P01")),
        ("SELECT pg_table_size('lake.traffic')".into(), Want::Code("42P01")),
        ("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'marc'".into(), rows(&["regional_manager"])),
        ("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'regional_manager'".into(), rows(&["f"])),
        ("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT DISTINCT region FROM retail; COMMIT; FETCH ALL FROM c; CLOSE c".into(), Want::Rows(vec![mine.clone()])),
    ];
    let lea_probes: Vec<(String, Want)> = vec![
        ("SELECT DISTINCT store_code FROM retail".into(), Want::Rows(vec![lea_store.clone()])),
        ("SELECT DISTINCT region FROM retail".into(), Want::Rows(vec![lea_region.clone()])),
        (format!("SELECT COUNT(*) FROM retail WHERE {store_probe}"), Want::Anything),
        (format!("SELECT COUNT(*) FROM retail WHERE store_code = '{}'", other_stores[0]), rows(&["0"])),
        ("SELECT SUM(revenue) FROM retail".into(), Want::Code("42703")),
        ("SELECT MEASURE(average_basket) FROM retail".into(), Want::Code("42703")),
        ("SELECT sales_per_visitor FROM retail".into(), Want::Code("42703")),
        ("SELECT reveneu FROM retail".into(), Want::Code("42703")),
        ("SELECT average_baskett FROM retail".into(), Want::Code("42703")),
        ("SELECT * FROM retail LIMIT 1".into(), Want::Anything),
        ("SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'retail'".into(), Want::Anything),
        ("SELECT string_agg(a.attname, ',') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = 'retail'".into(), Want::Anything),
        ("SELECT has_column_privilege('retail', 'revenue', 'SELECT')".into(), rows(&["f"])),
        ("SELECT has_column_privilege('retail', 'footfall', 'SELECT')".into(), rows(&["t"])),
        // Head office reads revenue, but the partner is not told so.
        ("SELECT has_column_privilege('boss', 'retail', 'revenue', 'SELECT')".into(), rows(&["f"])),
        ("EXPLAIN SELECT SUM(footfall) FROM retail".into(), Want::Anything),
        ("SET ROLE regional_manager".into(), Want::Code("42501")),
    ];
    let duo_probes: Vec<(String, Want)> = vec![
        // Both roles: the union of their rows, and revenue (the manager's policy shows it).
        ("SELECT COUNT(DISTINCT region) FROM retail".into(), rows(&["2"])),
        ("SELECT COUNT(*) > 0 FROM (SELECT SUM(revenue) FROM retail) s".into(), rows(&["t"])),
        // As the partner alone: the partner's rows and members.
        ("SET ROLE partner; SELECT DISTINCT store_code FROM retail".into(), Want::Rows(vec![lea_store.clone()])),
        ("SELECT SUM(revenue) FROM retail".into(), Want::Code("42703")),
        ("SELECT has_column_privilege('retail', 'revenue', 'SELECT')".into(), rows(&["f"])),
        ("RESET ROLE; SELECT COUNT(DISTINCT region) FROM retail".into(), rows(&["2"])),
    ];
    let nobody_probes: Vec<(String, Want)> = vec![
        ("SELECT COUNT(*) FROM retail".into(), Want::Code("42P01")),
        ("SELECT has_table_privilege('retail', 'SELECT')".into(), rows(&["f"])),
        ("SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'lake')".into(), rows(&["0"])),
    ];
    let failures = rt.block_on(async {
        let mut failures = Vec::new();
        let mut ran = 0;
        for (user, probes, secrets) in [
            ("marc", &marc_probes, others.iter().cloned().chain(["schema lake".to_string()]).collect::<Vec<_>>()),
            ("lea", &lea_probes, other_stores.iter().cloned().chain(hidden_members.iter().map(|s| s.to_string())).collect::<Vec<_>>()),
            ("duo", &duo_probes, vec![]),
            ("nobody", &nobody_probes, vec!["retail".to_string()]),
        ] {
            let c = connect(user).await;
            for (sql, want) in probes {
                ran += 1;
                let got = outcome(&c, sql).await;
                let ok = match (want, &got) {
                    (Want::Rows(w), Ok(r)) => r == w,
                    (Want::Code(code), Err(e)) => e.starts_with(code),
                    (Want::Anything, _) => true,
                    _ => false,
                };
                let text = match &got {
                    Ok(r) => r.join("\n"),
                    Err(e) => e.clone(),
                };
                let leaked: Vec<&String> = secrets.iter().filter(|s| !sql.contains(s.as_str()) && text.contains(s.as_str())).collect();
                if !ok || !leaked.is_empty() {
                    failures.push(format!("{user}: {sql}\n  got: {got:?}\n  leaked: {leaked:?}"));
                }
            }
        }
        assert!(ran >= 40, "{ran} probes");
        // A statement prepared before SET ROLE answers for the role taken since.
        let duo = connect("duo").await;
        let regions = duo.prepare("SELECT DISTINCT region FROM retail").await.unwrap();
        let revenue = duo.prepare("SELECT SUM(revenue) FROM retail").await.unwrap();
        duo.simple_query("SET ROLE partner").await.unwrap();
        let now: Vec<String> = duo.query(&regions, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        if now != [lea_region.clone()] {
            failures.push(format!("duo: a statement prepared before SET ROLE partner answered {now:?}"));
        }
        match duo.query(&revenue, &[]).await {
            Err(e) if e.code().is_some_and(|c| c.code() == "42703") => {}
            other => failures.push(format!("duo: revenue prepared before SET ROLE partner gave {other:?}")),
        }
        // PostgreSQL's names for the user functions.
        let names: Vec<String> = connect("duo").await.prepare("SELECT current_user, session_user, current_role, user").await.unwrap().columns().iter().map(|c| c.name().to_string()).collect();
        if names != ["current_user", "session_user", "current_role", "user"] {
            failures.push(format!("duo: user function columns named {names:?}"));
        }
        // The partner's `SELECT *` has no hidden column.
        let columns: Vec<String> = connect("lea").await.prepare("SELECT * FROM retail").await.unwrap().columns().iter().map(|c| c.name().to_string()).collect();
        if columns.iter().any(|c| hidden_members.contains(&c.as_str())) || !columns.iter().any(|c| c == "footfall") {
            failures.push(format!("lea: SELECT * has columns {columns:?}"));
        }
        failures
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Real clients as the partner (restricted rows and members, no lake): psql's describe
/// commands, SQLAlchemy reflection and pandas, Power BI's navigator and DirectQuery and
/// Tableau's catalog statements, psqlODBC through pyodbc, pgjdbc's DatabaseMetaData
/// (tests/clients/restricted_client.py, RestrictedMetadata.java) list and read only what the
/// partner's policy gives.
#[tokio::test(flavor = "multi_thread")]
async fn real_clients_list_only_what_the_partner_sees() {
    use crate::clients::{assert_passed, clients_dir, run, run_java};
    let dir = fresh_dir("access-clients");
    generate_into(&dir, &lakecube::datagen::Preset::Tiny.params());
    let defs = cube_defs_with_policies(&dir);
    let store = query_csv(&dir, "SELECT MIN(store_code) FROM lake.stores").lines().nth(1).unwrap().trim().to_string();
    let verifier = lakecube::frontend::auth::Verifier::new("lea-pw").to_text();
    let config = dir.join("lakecube.yaml");
    std::fs::write(&config, format!("users:\n  lea: {{ password: \"{verifier}\", roles: [partner], attributes: {{ stores: [\"{store}\"] }} }}\n")).unwrap();
    let (mut server, port) = serve(&dir, &defs, &config);
    let psql = |sql: &str| psql_as(port, "lea", "lea-pw", sql);
    let (schemas, describe, tables, roles) = (psql("\\dn"), psql("\\d retail"), psql("\\dt lake.*"), psql("\\du"));
    let python = run("python3", vec!["restricted_client.py".into(), port.to_string(), "lea".into(), "lea-pw".into(), store.clone()], clients_dir()).await;
    let java = run_java("RestrictedMetadata", &[port.to_string(), "lea".into(), "lea-pw".into(), store.clone()]).await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(stdout(&schemas).contains("public") && !stdout(&schemas).contains("lake"), "\\dn: {}{}", stdout(&schemas), stderr(&schemas));
    let described = stdout(&describe);
    assert!(described.contains("footfall") && !described.contains("revenue") && !described.contains("average_basket"), "\\d retail: {described}{}", stderr(&describe));
    assert!(!stdout(&tables).contains("traffic"), "\\dt lake.*: {}", stdout(&tables));
    assert!(stdout(&roles).lines().any(|l| l.starts_with("lea|") && l.contains("partner")), "\\du: {}{}", stdout(&roles), stderr(&roles));
    assert_passed(&python, "restricted_client.py");
    assert_passed(&java, "RestrictedMetadata");
}

/// The audit log (issue 17): every statement and login, through `lakecube serve` with
/// `audit: { dir, redact: literals }`: failed and successful logins, a query answered from a
/// rollup and one from the lake (bytes read), a failing statement with its SQLSTATE, a
/// statement after `SET ROLE`, an extended-protocol query; in the JSON-lines file and in
/// `lakecube.query_log`, which only a role granted `audit` reads.
#[test]
fn the_audit_log_records_statements_and_logins() {
    let (dir, defs) = tiny_lake_with_policies_and_rollups("access-audit");
    let region = query_csv(&dir, "SELECT MIN(region) FROM lake.stores").lines().nth(1).unwrap().trim().to_string();
    let audit_dir = dir.join("audit-files");
    let config = config_file(
        &dir,
        &format!(
            "users:
  marc: {{ password: \"PW\", roles: [regional_manager], attributes: {{ region: \"{region}\" }} }}
  ada: {{ password: \"PW\", roles: [auditor] }}
roles:
  auditor: {{ audit: true }}
audit:
  dir: {}
  redact: literals
",
            audit_dir.display()
        ),
    );
    let (mut server, port) = serve(&dir, &defs, &config);
    let wrong = psql_as(port, "marc", "not-the-password", "SELECT 1");
    assert!(!wrong.status.success());
    let (marc, ada) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let connect = |user: &'static str| async move {
            let url = format!("host=127.0.0.1 port={port} user={user} password=pw dbname=lakecube application_name=audit-test");
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c
        };
        let c = connect("marc").await;
        let mut marc = Vec::new();
        for sql in [
            "SELECT region, SUM(footfall) FROM retail GROUP BY region",
            "SET lakecube.rollups = off",
            "SELECT SUM(units) FROM retail WHERE store_code <> 'x'",
            "SELECT no_such_member FROM retail",
            "SET ROLE regional_manager",
            "SELECT COUNT(*) FROM lakecube.query_log",
        ] {
            marc.push(outcome(&c, sql).await);
        }
        let rows = c.query("SELECT DISTINCT region FROM retail WHERE store_code <> $1", &[&"none"]).await.unwrap();
        marc.push(Ok(vec![rows.len().to_string()]));
        let a = connect("ada").await;
        let ada = outcome(&a, "SELECT kind || '|' || user_name || '|' || coalesce(role, '') || '|' || sqlstate || '|' || rows || '|' || (bytes_read > 0) || '|' || rollups || '|' || application_name || '|' || statement FROM lakecube.query_log ORDER BY time").await;
        let history = outcome(&a, "SELECT COUNT(*) > 0 FROM lakecube.lake_history WHERE operation IS NOT NULL").await;
        assert_eq!(history, Ok(vec!["t".to_string()]), "the lake's history, for the auditor");
        (marc, ada)
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(marc[5].as_ref().is_err_and(|e| e.starts_with("42P01")), "query_log is only for audit roles: {:?}", marc[5]);
    let ada = ada.unwrap();
    let line = |prefix: &str| ada.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no record {prefix}…: {ada:#?}")).clone();
    assert!(line("login_failed|marc|").contains("|28P01|"), "{ada:#?}");
    assert!(line("login|marc|").contains("|00000|"));
    // From a rollup: its name; one region's row.
    let rollup = line("statement|marc||00000|1|");
    assert!(rollup.contains("SELECT region, SUM(footfall) FROM retail GROUP BY region") && rollup.contains("|audit-test|"), "{rollup}");
    assert!(ada.iter().any(|l| l.contains("SUM(footfall)") && l.split('|').nth(6).is_some_and(|r| !r.is_empty())), "a rollup is named: {ada:#?}");
    // From the lake (rollups off): bytes read; literals redacted.
    let lake = line("statement|marc||00000|1|true||audit-test|SELECT SUM(units) FROM retail WHERE store_code <> ?");
    assert!(!lake.contains("'x'"), "{lake}");
    assert!(line("statement|marc||42703|0|").contains("no_such_member"));
    // After SET ROLE, the role; the refused read of the log is there too.
    assert!(line("statement|marc|regional_manager|42P01|").contains("lakecube.query_log"));
    assert!(line("statement|marc|regional_manager|00000|1|").contains("WHERE store_code <> $1"), "{ada:#?}");
    // The file has every record, as JSON lines.
    let files: Vec<_> = std::fs::read_dir(&audit_dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one daily file");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.iter().any(|r| r["kind"] == "login_failed" && r["user"] == "marc" && r["sqlstate"] == "28P01"), "{text}");
    assert!(records.iter().any(|r| r["sqlstate"] == "42703" && r["statement"].as_str().is_some_and(|s| s.contains("no_such_member"))), "{text}");
    assert!(records.len() >= ada.len(), "{} records in the file, {} in the table", records.len(), ada.len());
}

/// The differential over the wire (issue 17): random cube queries (the rollups test's
/// generator) as the regional manager and as the partner, each on the simple protocol, the
/// extended protocol, a prepared statement and a server-side cursor in turn, rollups on and
/// off in turn, through `lakecube serve` and psycopg (tests/clients/policy_differential.py);
/// each answer equals head office's answer to the query with the policy's filter added, and a
/// query naming a member the partner may not see fails with 42703.
/// `LAKECUBE_ACCESS_QUERIES` sets how many (default 40 per user).
#[tokio::test(flavor = "multi_thread")]
async fn random_queries_on_every_wire_path_equal_the_policy_filtered_answers() {
    use crate::clients::{assert_passed, clients_dir, run};
    let (dir, defs) = tiny_lake_with_policies_and_rollups("access-wire-differential");
    let first = |sql: &str| query_csv(&dir, sql).lines().nth(1).unwrap().trim().to_string();
    let region = first("SELECT MIN(region) FROM lake.stores");
    let store = first(&format!("SELECT MIN(store_code) FROM lake.stores WHERE region <> '{region}'"));
    let config = config_file(
        &dir,
        &format!(
            "users:
  boss: {{ password: \"PW\", roles: [head_office] }}
  marc: {{ password: \"PW\", roles: [regional_manager], attributes: {{ region: \"{region}\" }} }}
  lea: {{ password: \"PW\", roles: [partner], attributes: {{ stores: [\"{store}\"] }} }}
"
        ),
    );
    let n = std::env::var("LAKECUBE_ACCESS_QUERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut g = crate::rollups::Generator { rng: rand::SeedableRng::seed_from_u64(29) };
    let hidden = ["revenue", "average_basket", "sales_per_visitor"];
    let cases: Vec<serde_json::Value> = (0..n)
        .map(|_| {
            let q = g.query();
            let partner = (!hidden.iter().any(|h| q.contains(h))).then(|| with_filter(&q, &format!("store_code = '{store}'")));
            serde_json::json!({ "sql": q, "expected": { "marc": with_region(&q, &region), "lea": partner } })
        })
        .collect();
    let spec = dir.join("policy-cases.json");
    let users = serde_json::json!({ "marc": "pw", "lea": "pw" });
    std::fs::write(&spec, serde_json::json!({ "users": users, "reference": ["boss", "pw"], "cases": cases }).to_string()).unwrap();
    let (mut server, port) = serve(&dir, &defs, &config);
    let o = run("python3", vec!["policy_differential.py".into(), port.to_string(), spec.to_str().unwrap().into()], clients_dir()).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_passed(&o, "policy_differential.py");
    let summary = stdout(&o);
    eprintln!("{}", summary.lines().find(|l| l.starts_with("checked")).unwrap_or_default());
    assert!(["simple", "extended", "prepared", "cursor", "denied"].iter().all(|p| summary.contains(&format!("\"{p}\""))), "every path ran: {summary}");
}
