//! A throwaway PostgreSQL 15 cluster, shared by the tests (`tests/common`) and the end-to-end
//! benchmark (`benches/e2e.rs`).
#![allow(dead_code)]

/// A throwaway PostgreSQL 15 cluster (Debian's package, which scripts/test.sh installs) on a
/// free loopback port: initdb in a temporary folder (run as the `postgres` user when the tests
/// run as root, as PostgreSQL refuses root), trust authentication, stopped when dropped.
pub struct LocalPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl LocalPostgres {
    const BIN: &'static str = "/usr/lib/postgresql/15/bin";

    pub fn start() -> LocalPostgres {
        Self::start_with("")
    }

    /// Starts a cluster with extra server options (`-c shared_buffers=1GB …`).
    pub fn start_with(options: &str) -> LocalPostgres {
        let dir = tempfile::Builder::new().prefix("lakecube-test-pg-").tempdir().unwrap();
        let as_postgres = std::process::Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
        let pg = LocalPostgres { port: std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(), dir, as_postgres };
        if as_postgres {
            let ok = std::process::Command::new("chown").args(["postgres:postgres", pg.dir.path().to_str().unwrap()]).status().unwrap();
            assert!(ok.success(), "chown to the postgres user");
        }
        let data = pg.dir.path().join("data");
        pg.run(&[&format!("{}/initdb", Self::BIN), "-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {options}", pg.port, pg.dir.path().display());
        let log = pg.dir.path().join("log");
        pg.run(&[&format!("{}/pg_ctl", Self::BIN), "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "start", "-o", &opts]);
        pg
    }

    /// A command run as the cluster's owner.
    fn command(&self, program: &str) -> std::process::Command {
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    fn run(&self, args: &[&str]) {
        let out = self.command(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// Runs SQL through psql as the `postgres` user.
    pub fn psql(&self, sql: &str) {
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command(&format!("{}/pg_ctl", Self::BIN)).args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
    }
}
