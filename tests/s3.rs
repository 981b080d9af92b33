//! The lake on S3: generate and query through object_store's S3 client against a local
//! S3-compatible server (moto, started here on a free loopback port).

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lakecube::datagen::Preset;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be installed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("moto exited ({status}): install it with `pip install 'moto[server]'` (scripts/test.sh does)");
        }
        assert!(
            Instant::now() < deadline,
            "moto did not start: install it with `pip install 'moto[server]'` (scripts/test.sh does)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
}

/// CreateBucket, path-style (moto accepts unsigned requests).
fn create_bucket(m: &Moto, bucket: &str) {
    let addr = m.endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

#[test]
fn generate_and_query_a_lake_on_s3() {
    let moto = start_moto();
    create_bucket(&moto, "lakecube-test");
    let env = aws_env(&moto.endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = "s3://lakecube-test/lakes/tiny";
    let o = lakecube(&["generate", "--lake", url, "--preset", "tiny"], &env);
    assert!(o.status.success(), "generate on S3 failed: {}", stderr(&o));

    let sql = "SELECT s.region, SUM(t.revenue), count(*) FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1 ORDER BY 1";
    let o = lakecube(&["query", "--format", "csv", "--lake", url, sql], &env);
    assert!(o.status.success(), "query on S3 failed: {}", stderr(&o));
    // The same seed on a local folder gives the same answer.
    assert_eq!(stdout(&o), query_csv(&lake(Preset::Tiny), sql));

    // Generating again into the same lake is refused, not duplicated.
    let o = lakecube(&["generate", "--lake", url, "--preset", "tiny"], &env);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already has tables"), "{}", stderr(&o));
}

#[test]
fn unreachable_s3_endpoint_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = aws_env(&format!("http://127.0.0.1:{port}"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t0 = Instant::now();
    let o = lakecube(&["generate", "--lake", "s3://nobucket/lake", "--preset", "tiny"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error: cannot write to the lake at s3://nobucket/lake/"), "{err}");
    assert!(err.contains("hint: check AWS_ENDPOINT_URL"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(60));
}
