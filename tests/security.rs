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
