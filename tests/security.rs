//! TLS and password authentication with real clients: psql over TLS with SCRAM-SHA-256,
//! wrong passwords and unknown users refused with 28P01, `lakecube user add` writing
//! verifiers (never passwords), and servers that refuse to start on a bad TLS setup.

use crate::common;

use std::process::Command;

use common::*;
use lakecube::datagen::Preset;
use lakecube::frontend::auth::{Users, tls_acceptor};
use lakecube::frontend::server::Security;

/// A self-signed certificate and key (openssl is installed by scripts/test.sh if missing).
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(o.status.success(), "{}", stderr(&o));
    (cert, key)
}

/// Runs `lakecube user add NAME --password-stdin`, as an operator would.
fn run_user_add(config: &std::path::Path, name: &str, password: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lakecube"))
        .args(["user", "add", name, "--password-stdin", "--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Adds a user through the CLI.
fn add_user(config: &std::path::Path, name: &str, password: &str) {
    let o = run_user_add(config, name, password);
    assert!(o.status.success(), "{}", stderr(&o));
}

async fn psql(conninfo: String, password: &str, sql: &str) -> std::process::Output {
    let (password, sql) = (password.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        Command::new("psql")
            .args(["-X", "-At", &conninfo, "-c", &sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_scram_with_psql_and_tokio_postgres() {
    let dir = fresh_dir("security");
    let (cert, key) = certificate(&dir);
    let config = dir.join("lakecube.yaml");
    std::fs::write(&config, "# lakecube settings\nlog: info\n").unwrap();
    add_user(&config, "analyst", "pencil");
    add_user(&config, "bi", "crayon");
    add_user(&config, "analyst", "sharpener"); // a second add changes the password
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# lakecube settings\n"), "comments are kept:\n{text}");
    assert_eq!(text.matches("analyst:").count(), 1, "{text}");
    assert!(!text.contains("pencil") && !text.contains("sharpener") && !text.contains("crayon"), "{text}");

    let file = lakecube::config::FileSettings::load(&config).unwrap();
    let security = Security {
        tls: Some(tls_acceptor(&cert, &key).unwrap()),
        users: Users::parse(&lakecube::config::split_users(file.users.unwrap()).unwrap().0).unwrap(),
        tls_cert_pem: None,
    };
    let server = TestServer::start_secured(&lake(Preset::Tiny), 10, security).await;
    let conn = |user: &str, ssl: &str| format!("host=127.0.0.1 port={} user={user} dbname=lakecube sslmode={ssl}", server.port);

    let o = psql(conn("analyst", "require"), "sharpener", "SELECT session_user, count(*) FROM lake.stores").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("analyst|"), "{}", stdout(&o));
    // The catalogs list the configured users as the roles (DBeaver's and pgAdmin's role lists).
    let o = psql(conn("bi", "require"), "crayon", "SELECT string_agg(rolname, ',' ORDER BY rolname), bool_or(rolsuper) FROM pg_roles WHERE rolcanlogin").await;
    assert_eq!(stdout(&o).trim(), "analyst,bi|f", "{}", stderr(&o));
    let o = psql(conn("analyst", "require"), "sharpener", "\\conninfo").await;
    assert!(stdout(&o).contains("SSL connection"), "{}", stdout(&o));

    for (user, password) in [("analyst", "pencil"), ("analyst", "wrong"), ("nobody", "x")] {
        let o = psql(conn(user, "disable"), password, "SELECT 1").await;
        assert!(!o.status.success(), "{user}/{password} got in");
        assert!(stderr(&o).to_lowercase().contains("password authentication failed"), "{}", stderr(&o));
    }

    // SCRAM without TLS works too (no password crosses the wire); tokio-postgres speaks it.
    let (client, c) = tokio_postgres::connect(&format!("{} password=crayon", conn("bi", "disable")), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(c);
    let user: String = client.query_one("SELECT session_user", &[]).await.unwrap().get(0);
    assert_eq!(user, "bi");
    let e = tokio_postgres::connect(&format!("{} password=nope", conn("bi", "disable")), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a wrong password is refused");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28P01"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tls_a_client_that_requires_it_is_refused() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let o = psql(format!("host=127.0.0.1 port={} user=lakecube dbname=lakecube sslmode=require", server.port), "", "SELECT 1").await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not support SSL"), "{}", stderr(&o));
    server.stop().await;
}

#[test]
fn bad_tls_or_users_stop_the_server_before_it_listens() {
    let dir = fresh_dir("bad-security");
    let (cert, _key) = certificate(&dir);
    let tiny = lake(Preset::Tiny);
    let lake_arg = tiny.to_str().unwrap();
    let cert = cert.to_str().unwrap();
    let missing = dir.join("missing.pem");
    let o = lakecube(&["serve", "--lake", lake_arg, "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", missing.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read TLS private key"), "{}", stderr(&o));
    let o = lakecube(&["serve", "--lake", lake_arg, "--listen", "127.0.0.1:0", "--tls-cert", cert], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("TLS needs both tls_cert and tls_key"), "{}", stderr(&o));
    let config = dir.join("bad-users.yaml");
    std::fs::write(&config, "users:\n  alice: plaintext-password\n").unwrap();
    let o = lakecube(&["serve", "--lake", lake_arg, "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("SCRAM-SHA-256 verifier") && stderr(&o).contains("lakecube user add"), "{}", stderr(&o));
    let o = lakecube(&["user", "add", "alice", "--password-stdin"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--config"), "{}", stderr(&o));
}

/// `require_tls`: a plaintext client is refused with 28000 before any password is asked,
/// one over TLS gets in. `user add` keeps a private config private and writes through no link.
#[tokio::test(flavor = "multi_thread")]
async fn tls_can_be_required_and_user_add_keeps_the_config_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("require-tls");
    let (cert, key) = certificate(&dir);
    let config = dir.join("lakecube.yaml");
    std::fs::write(&config, "log: info\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    add_user(&config, "analyst", "pencil");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the verifiers stay readable by the owner only");
    let link = dir.join("link.yaml");
    std::os::unix::fs::symlink(&config, &link).unwrap();
    let o = run_user_add(&link, "bi", "crayon");
    assert!(!o.status.success() && stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert!(!std::fs::read_to_string(&config).unwrap().contains("bi:"), "nothing written through the link");

    let file = lakecube::config::FileSettings::load(&config).unwrap();
    let security = Security {
        tls: Some(tls_acceptor(&cert, &key).unwrap()),
        users: Users::parse(&lakecube::config::split_users(file.users.unwrap()).unwrap().0).unwrap(),
        tls_cert_pem: Some(std::fs::read(&cert).unwrap()),
    };
    let limits = lakecube::frontend::server::Limits {
        connection: lakecube::frontend::connection::ConnectionLimits { require_tls: true, ..Default::default() },
        ..Default::default()
    };
    let server = TestServer::start_with(&lake(Preset::Tiny), limits, security, lakecube::engine::Options::default()).await;
    let conn = |ssl: &str| format!("host=127.0.0.1 port={} user=analyst dbname=lakecube sslmode={ssl}", server.port);
    let o = psql(conn("disable"), "pencil", "SELECT 1").await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("this server requires TLS"), "{}", stderr(&o));
    let e = tokio_postgres::connect(&format!("{} password=pencil", conn("disable")), tokio_postgres::NoTls).await.err().unwrap();
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28000"), "{e}");
    let o = psql(conn("require"), "pencil", "SELECT count(*) FROM lake.stores").await;
    assert_eq!(stdout(&o).trim(), "3", "{}", stderr(&o));
    // Over TLS, SCRAM-SHA-256-PLUS binds the proof to the server's certificate.
    let o = psql(format!("{} channel_binding=require", conn("require")), "pencil", "SELECT 1").await;
    assert_eq!(stdout(&o).trim(), "1", "{}", stderr(&o));
    server.stop().await;
}

/// Every Parquet data file under `dir` (lake tables and rollups; not the Delta logs'
/// checkpoints, which hold the log in plain text: docs/security.md), with its bytes.
fn parquet_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("_delta_log") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Encryption at rest (issue 17): a lake generated, its rollups built, a batch ingested and
/// its files compacted (`maintain`) with `LAKECUBE_ENCRYPTION_KEY` answers as the same lake in plain Parquet; every Parquet file
/// (tables and rollups) has an encrypted footer (`PARE`) and no store code in its bytes;
/// without the key, or with a wrong one, a read is a clear error; after a rotation (a key file
/// whose first key writes, the old one still listed) new batches use the new key and old files
/// stay readable, and dropping the old key makes them a clear error.
#[test]
fn an_encrypted_lake_answers_as_a_plain_one_and_keeps_no_plaintext() {
    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let key = [("LAKECUBE_ENCRYPTION_KEY", KEY)];
    let (plain, secret) = (fresh_dir("crypto-plain"), fresh_dir("crypto-secret"));
    let sensors = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ingest");
    let reports = fresh_dir("crypto-reports");
    for (dir, env) in [(&plain, &[][..]), (&secret, &key[..])] {
        let lake = dir.to_str().unwrap();
        for args in [
            vec!["generate", "--lake", lake, "--preset", "tiny"],
            vec!["rollups", "build", "--full", "--lake", lake],
            vec!["ingest", sensors.join("sensors.yaml").to_str().unwrap(), "--file", sensors.join("sensors_utf8_comma.csv").to_str().unwrap(), "--lake", lake, "--report-dir", reports.to_str().unwrap()],
            vec!["maintain", "--lake", lake],
        ] {
            let o = lakecube(&args, env);
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        }
    }
    let query = |dir: &std::path::Path, env: &[(&str, &str)], sql: &str| lakecube(&["query", "--format", "csv", "--lake", dir.to_str().unwrap(), sql], env);
    for sql in [
        "SELECT region, SUM(footfall), SUM(revenue), MEASURE(conversion) FROM retail GROUP BY 1 ORDER BY 1",
        "SELECT store_code, date_trunc('month', period) AS m, MEASURE(store_count), SUM(units) FROM retail GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT COUNT(*), SUM(footfall) FROM lake.traffic",
        "SELECT store_code, city FROM lake.stores ORDER BY 1",
    ] {
        let (a, b) = (query(&plain, &[], sql), query(&secret, &key, sql));
        assert!(b.status.success(), "{sql}: {}", stderr(&b));
        assert_eq!(stdout(&a), stdout(&b), "{sql}");
    }
    let store = "FR-PAR-001";
    let secret_files = parquet_files(&secret);
    assert!(secret_files.len() >= 4 && secret_files.iter().any(|(p, _)| p.to_string_lossy().contains("_rollups")), "{} files", secret_files.len());
    for (path, bytes) in &secret_files {
        assert!(bytes.ends_with(b"PARE"), "{} has no encrypted footer", path.display());
        assert!(!bytes.windows(store.len()).any(|w| w == store.as_bytes()), "{} holds a store code in plain text", path.display());
    }
    // The same check finds the plain lake's files plain (the check can fail).
    assert!(parquet_files(&plain).iter().any(|(_, b)| b.ends_with(b"PAR1") && b.windows(store.len()).any(|w| w == store.as_bytes())));
    // Without the key, with a wrong key: clear errors, no rows.
    let sql = "SELECT SUM(footfall) FROM lake.traffic";
    let none = query(&secret, &[], sql);
    assert!(!none.status.success() && stderr(&none).contains("hint: the lake's files are encrypted"), "{}", stderr(&none));
    let wrong = query(&secret, &[("LAKECUBE_ENCRYPTION_KEY", &KEY.replace("00", "ff"))], sql);
    assert!(!wrong.status.success() && stdout(&wrong).is_empty() && stderr(&wrong).contains("hint: the keys given are not"), "{}{}", stdout(&wrong), stderr(&wrong));
    // Rotation: k2 writes, the old key (id `default`) still reads.
    let keys = secret.join("keys.txt");
    let new_key = KEY.replace('0', "a");
    std::fs::write(&keys, format!("# rotated\nk2 {new_key}\ndefault {KEY}\n")).unwrap();
    let rotated = [("LAKECUBE_ENCRYPTION_KEY_FILE", keys.to_str().unwrap())];
    let before: std::collections::HashSet<_> = secret_files.iter().map(|(p, _)| p.clone()).collect();
    let o = lakecube(
        &["ingest", sensors.join("sensors.yaml").to_str().unwrap(), "--file", sensors.join("sensors_fr.txt").to_str().unwrap(), "--lake", secret.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()],
        &rotated,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let both = query(&secret, &rotated, sql);
    assert!(both.status.success(), "{}", stderr(&both));
    let newer: Vec<_> = parquet_files(&secret).into_iter().filter(|(p, _)| !before.contains(p)).collect();
    assert!(!newer.is_empty() && newer.iter().all(|(_, b)| b.windows(2).any(|w| w == b"k2")), "new files carry key id k2");
    std::fs::write(&keys, format!("k2 {new_key}\n")).unwrap();
    let old_dropped = query(&secret, &rotated, sql);
    assert!(!old_dropped.status.success() && stderr(&old_dropped).contains("key `default`"), "{}", stderr(&old_dropped));
}
