//! The `lakecube` binary: the main job end to end, and bad input answered with a one-line
//! error, a hint and a non-zero exit, never a panic.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use lakecube::datagen::Preset;

fn assert_clean_error(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains(needle), "expected {needle:?} in {err}");
    assert!(err.contains("hint: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_generates_the_demo_lake_on_first_start_then_reuses_it_and_stops_on_sigterm() {
    let dir = fresh_dir("first-start");
    // An empty lake at a location given by flag is an error (a mistyped prefix must not be
    // served demo data), unless --demo-if-empty asks for the demo lake there.
    let o = lakecube(&["serve", "--listen", "127.0.0.1:0", "--lake", dir.to_str().unwrap()], &[]);
    assert_clean_error(&o, "is empty");
    assert!(stderr(&o).contains("lakecube generate --lake"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing written to the empty lake");
    for first in [true, false] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lakecube"))
            .args(["serve", "--listen", "127.0.0.1:0", "--demo-if-empty", "--lake", dir.to_str().unwrap()])
            .env_remove("LAKECUBE_LAKE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let port: u16 = loop {
            let line = lines.next().expect("server exited early").unwrap();
            seen.push(line.clone());
            if let Some(rest) = line.strip_prefix("connect with: psql -h 127.0.0.1 -p ") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        let generated = seen.iter().any(|l| l.contains("generating the demo lake"));
        assert_eq!(generated, first, "{seen:?}");
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let out = Command::new("psql")
            .args(["-X", "--csv", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "lakecube", "-d", "lakecube", "-c", "SELECT count(*) AS stores FROM lake.stores"])
            .output()
            .unwrap();
        assert_eq!(stdout(&out), "stores\n20\n", "{}", stderr(&out));
        let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    }
}

#[test]
fn bad_flags_config_and_locations() {
    // Unknown flag: clap's usage error, exit 2.
    let o = lakecube(&["serve", "--bogus"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--bogus"));

    // Malformed config file: file:line:column and the valid keys.
    let cfg = fresh_dir("cfg").join("bad.yaml");
    std::fs::write(&cfg, "lake: data/x\nlisten_port: 5433\n").unwrap();
    let o = lakecube(&["query", "--config", cfg.to_str().unwrap(), "SELECT 1"], &[]);
    assert_clean_error(&o, "bad.yaml:2:1");
    assert!(stderr(&o).contains("listen_port"));

    // A lake that does not exist.
    let o = lakecube(&["query", "--lake", "/definitely/not/a/lake", "SELECT 1"], &[]);
    assert_clean_error(&o, "does not exist");

    // A lake that cannot be written.
    let o = lakecube(&["generate", "--lake", "/proc/no-lake-here", "--preset", "tiny"], &[]);
    assert_clean_error(&o, "/proc/no-lake-here");

    // An unsupported scheme.
    let o = lakecube(&["query", "--lake", "ftp://host/lake", "SELECT 1"], &[]);
    assert_clean_error(&o, "ftp://");

    // A non-loopback listen address with no users.
    let o = lakecube(&["serve", "--listen", "0.0.0.0:0", "--lake", lake(Preset::Tiny).to_str().unwrap()], &[]);
    assert_clean_error(&o, "refusing to listen");

    // Out-of-range generator parameters.
    // Numbers beyond what the server can hold are errors, not panics or silent wraps.
    let tiny = lake(Preset::Tiny);
    let o = lakecube(&["serve", "--max-connections", "18446744073709551615", "--lake", tiny.to_str().unwrap()], &[]);
    assert_clean_error(&o, "max_connections must be from 1 to 262143");
    let o = lakecube(&["serve", "--memory-limit", "lots", "--lake", tiny.to_str().unwrap()], &[]);
    assert_clean_error(&o, "memory_limit: `lots` is not a size");
    let o = lakecube(&["serve", "--statement-timeout", "1e20", "--lake", tiny.to_str().unwrap()], &[]);
    assert_clean_error(&o, "statement_timeout");
    let o = lakecube(&["serve", "--background-rows", "many", "--lake", tiny.to_str().unwrap()], &[]);
    assert_clean_error(&o, "background_rows `many` is neither a number of rows nor off");
    let o = lakecube(&["ingest", "door_sensors", "--lake", tiny.to_str().unwrap(), "--watch", "--interval", "1e20"], &[]);
    assert_clean_error(&o, "--interval must be a positive number of seconds");
    let o = lakecube(&["generate", "--lake", "memory://", "--departments", "40"], &[]);
    assert_clean_error(&o, "--departments 40");
    let o = lakecube(&["generate", "--lake", "memory://", "--from", "2025-02-01", "--to", "2025-01-01"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn port_in_use_is_explained() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let o = lakecube(&["serve", "--listen", &listen, "--lake", lake(Preset::Tiny).to_str().unwrap()], &[]);
    assert_clean_error(&o, &format!("cannot listen on {listen}"));
}

#[test]
fn generate_refuses_to_overwrite_unless_asked() {
    let dir = fresh_dir("overwrite");
    let d = dir.to_str().unwrap();
    assert!(lakecube(&["generate", "--lake", d, "--preset", "tiny"], &[]).status.success());
    let before = query_csv(&dir, "SELECT count(*) FROM lake.traffic");
    let o = lakecube(&["generate", "--lake", d, "--preset", "tiny", "--stores", "2"], &[]);
    assert_clean_error(&o, "already has tables");
    assert_eq!(query_csv(&dir, "SELECT count(*) FROM lake.traffic"), before, "a refused generate changes nothing");
    let o = lakecube(&["generate", "--lake", d, "--preset", "tiny", "--stores", "2", "--overwrite"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(query_csv(&dir, "SELECT count(*) FROM lake.stores"), "count\n2\n");
}

#[test]
fn an_interrupted_generate_leaves_no_table_and_can_be_rerun() {
    let dir = fresh_dir("interrupted");
    let d = dir.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lakecube"))
        .args(["generate", "--lake", d, "--preset", "demo"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has written some data files but before it could finish.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let wrote = dir.join("traffic").read_dir().map(|mut r| r.next().is_some()).unwrap_or(false);
        if wrote || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = lakecube(&["query", "--lake", d, "SELECT count(*) FROM lake.traffic"], &[]);
    assert_clean_error(&o, "has no table");
    // Files of the interrupted run are not part of any table; a new run commits cleanly.
    let o = lakecube(&["generate", "--lake", d, "--preset", "tiny"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(query_csv(&dir, "SELECT count(*) FROM lake.traffic"), query_csv(&lake(Preset::Tiny), "SELECT count(*) FROM lake.traffic"));
}

#[test]
fn validate_reports_file_line_column() {
    let dir = fresh_dir("defs-bad");
    std::fs::write(dir.join("a.yaml"), "cubes:\n  - name: traffic\ncubs: []\n").unwrap();
    let o = lakecube(&["validate", "--cube-defs", dir.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("a.yaml:3:1: unknown key `cubs`, did you mean `cubes`? (valid keys: cubes, views)"), "{}", stdout(&o));
    let good = fresh_dir("defs-good");
    std::fs::write(good.join("a.yaml"), "cubes:\n  - name: traffic\n    sql_table: lake.traffic\n").unwrap();
    let o = lakecube(&["validate", "--cube-defs", good.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn validate_against_the_lake_checks_types() {
    let dir = fresh_dir("defs-types");
    let text = std::fs::read_to_string("cube-defs/retail.yaml").unwrap().replace("sql: region\n", "sql: surface_m2\n");
    std::fs::write(dir.join("retail.yaml"), text).unwrap();
    let o = lakecube(&["validate", "--cube-defs", dir.to_str().unwrap()], &[]);
    assert!(o.status.success(), "structurally valid: {}", stdout(&o));
    let o = lakecube(&["validate", "--cube-defs", dir.to_str().unwrap(), "--lake", lake(Preset::Tiny).to_str().unwrap()], &[]);
    assert_clean_error(&o, "dimension `region` is declared `type: string` but its SQL gives Int32");
}
