//! The command line: `lakecube serve | query | generate | ingest | maintain | validate |
//! schema | user`, one function per command, each wiring the library's pieces together.

use std::io::Write;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;

use crate::config::{Overrides, Settings};
use crate::datagen::{self, Preset};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::storage::{Lake, schema};

#[derive(Parser, Debug)]
#[command(name = "lakecube", version, about = "An OLAP cube server for retail analytics, spoken to as PostgreSQL")]
#[command(after_help = "Examples:\n  lakecube serve                         # serve the demo lake (generated on first start)\n  lakecube generate --lake data/sf1 --preset sf1\n  lakecube query \"SELECT count(*) FROM lake.traffic\"\n\nEvery option can also come from a LAKECUBE_* variable or a YAML file (--config); see docs/config.md.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a deterministic, realistic retail lake (stores, departments, hourly traffic).
    #[command(after_help = "Examples:\n  lakecube generate --lake data/demo --preset demo\n  lakecube generate --lake /tmp/lake --preset sf1 --seed 7\n  lakecube generate --lake s3://bucket/lake --stores 50 --departments 6 --from 2024-01-01 --to 2024-12-31\n  lakecube generate --lake memory:// --preset tiny")]
    Generate(GenerateArgs),
    /// Serve the lake and its cubes over the PostgreSQL wire protocol.
    #[command(after_help = "Examples:\n  lakecube serve\n  lakecube serve --lake data/sf1 --listen 127.0.0.1:6432\n  LAKECUBE_LAKE=s3://bucket/lake lakecube serve --config lakecube.yaml\n\nThen: psql -h 127.0.0.1 -U lakecube -d lakecube")]
    Serve(ServeArgs),
    /// Run one SQL statement in-process and print its result.
    #[command(after_help = "Examples:\n  lakecube query \"SELECT region, SUM(t.revenue) FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1\"\n  lakecube query --format csv --lake data/sf1 \"SELECT * FROM lake.stores\"")]
    Query(QueryArgs),
    /// Check the cube definitions and report problems as file:line:column: message.
    #[command(after_help = "Examples:\n  lakecube validate\n  lakecube validate --cube-defs my-cubes/\n  lakecube validate --lake data/demo   # also check types against the lake")]
    Validate(ValidateArgs),
    /// Bring raw exports (CSV, JSON, Parquet, spreadsheets, a PostgreSQL query, an HTTP API) into the lake by a source definition, exactly once.
    #[command(after_help = "Examples:\n  lakecube ingest door_sensors --file exports/sensors-2024-10-01.csv --dry-run\n  lakecube ingest cube-defs/sources/tills.yaml --lake data/demo\n  lakecube ingest door_sensors --max-reject-share 0.05\n\nSource definitions: cube-defs/sources/<name>.yaml (docs/ingest.md).")]
    Ingest(IngestArgs),
    /// Compact small files and delete files no longer in the lake's tables (past a retention).
    #[command(after_help = "Examples:\n  lakecube maintain --lake data/demo\n  lakecube maintain --lake s3://bucket/lake --retention-hours 336\n  lakecube maintain --dry-run")]
    Maintain(MaintainArgs),
    /// Manage the users who may connect (SCRAM-SHA-256 verifiers in the config file).
    #[command(subcommand)]
    User(UserCommand),
    /// Build rollups and show their state (docs/cube-format.md, "Rollups").
    #[command(subcommand)]
    Rollups(RollupsCommand),
    /// Show what the access policies give a user (docs/security.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the JSON Schema of cube definition files (for editors).
    #[command(after_help = "Examples:\n  lakecube schema > docs/cube-defs.schema.json\n\nIn a definitions file: # yaml-language-server: $schema=../docs/cube-defs.schema.json")]
    Schema,
}

#[derive(Args, Debug)]
pub struct MaintainArgs {
    /// The lake to maintain.
    #[arg(long, env = "LAKECUBE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
    /// Delete files removed from a table longer ago than this many hours (default: the
    /// table's retention, 7 days; shorter than the table's is refused).
    #[arg(long, value_name = "HOURS")]
    pub retention_hours: Option<u32>,
    /// Size compacted files aim at, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub target_file_mib: u64,
    /// List what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user (or change their password): writes a SCRAM-SHA-256 verifier, never the
    /// password, under `users:` in the config file.
    #[command(after_help = "Examples:\n  lakecube user add analyst --config lakecube.yaml          # asks for the password\n  printf '%s' \"$PW\" | lakecube user add bi --password-stdin --config lakecube.yaml")]
    Add(UserAddArgs),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print, for each table, whether the user sees it, which members and which rows.
    #[command(after_help = "Examples:\n  lakecube policy explain --user marc --config lakecube.yaml\n  lakecube policy explain --user partner_lyon --config lakecube.yaml --cube-defs my-cubes/")]
    Explain(PolicyExplainArgs),
}

#[derive(Args, Debug)]
pub struct PolicyExplainArgs {
    /// The user, as the config file's `users:` names them.
    #[arg(long)]
    pub user: String,
    /// Cube definitions folder.
    #[arg(long, env = "LAKECUBE_CUBE_DEFS", value_name = "DIR")]
    pub cube_defs: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// The user name clients log in with.
    pub name: String,
    /// Read the password from standard input instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub common: Common,
}

/// Options every command shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// YAML config file (keys as in docs/config.md).
    #[arg(long, env = "LAKECUBE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, env = "LAKECUBE_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Where to write the lake: a folder, file://…, s3://bucket/prefix or memory://.
    #[arg(long, env = "LAKECUBE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
    /// A named size; --stores, --departments, --from and --to override its parts.
    #[arg(long, value_enum, default_value = "demo")]
    pub preset: Preset,
    #[arg(long, value_name = "N")]
    pub stores: Option<u32>,
    #[arg(long, value_name = "N")]
    pub departments: Option<u32>,
    /// First day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub from: Option<NaiveDate>,
    /// Last day, included (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub to: Option<NaiveDate>,
    /// Random seed: the same seed and parameters give the same rows.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Replace the lake's tables if they exist.
    #[arg(long)]
    pub overwrite: bool,
    /// Also write the raw exports of the lake's last days into this folder: sensor CSVs and
    /// ticket files in four dialects, with one bad row in 200 (see docs/ingest.md).
    #[arg(long, value_name = "DIR")]
    pub raw: Option<std::path::PathBuf>,
    /// How many days `--raw` exports (the lake's last ones).
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub raw_days: u32,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The lake to serve: a folder, file://…, s3://bucket/prefix or memory://.
    #[arg(long, env = "LAKECUBE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
    /// Folder of cube definitions.
    #[arg(long, env = "LAKECUBE_CUBE_DEFS", value_name = "DIR")]
    pub cube_defs: Option<PathBuf>,
    /// Address to listen on (HOST:PORT; port 0 picks a free one).
    #[arg(long, env = "LAKECUBE_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Most client connections at once; more are refused with SQLSTATE 53300.
    #[arg(long, env = "LAKECUBE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds running queries may go on after SIGINT/SIGTERM.
    #[arg(long, env = "LAKECUBE_SHUTDOWN_GRACE_SECONDS", value_name = "S")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Accept password-less connections on a non-loopback address (only on a network you trust).
    #[arg(long, env = "LAKECUBE_TRUST_REMOTE")]
    pub trust_remote: bool,
    /// TLS certificate chain (PEM); with --tls-key, clients may (and Power BI must) use TLS.
    #[arg(long, env = "LAKECUBE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "LAKECUBE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (SQLSTATE 28000). Default: on when listening
    /// beyond loopback with users configured.
    #[arg(long, env = "LAKECUBE_REQUIRE_TLS", value_name = "BOOL")]
    pub require_tls: Option<bool>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Also watch this source's drop folder and ingest its new files while serving, as
    /// `lakecube ingest SOURCE --watch` does (repeatable).
    #[arg(long = "ingest-watch", value_name = "SOURCE")]
    pub ingest_watch: Vec<String>,
    /// Generate the demo lake when the lake is empty, also at a location given by flag,
    /// variable or config (without it, only the default `data/demo` is generated; an empty
    /// lake elsewhere is an error).
    #[arg(long, env = "LAKECUBE_DEMO_IF_EMPTY")]
    pub demo_if_empty: bool,
    /// Where --ingest-watch writes its run summaries and rejects (created if missing).
    #[arg(long = "ingest-reports", env = "LAKECUBE_INGEST_REPORTS", value_name = "DIR", default_value = "ingest-reports")]
    pub ingest_reports: PathBuf,
    /// Seconds between two polls of --ingest-watch.
    #[arg(long = "ingest-interval", value_name = "SECONDS", default_value = "5")]
    pub ingest_interval: f64,
    /// Seconds between two checks that the rollups are current (partitions behind the lake
    /// are rebuilt); 0 turns the refresh off (rollups are then built by `lakecube rollups
    /// build`, and queries over partitions behind the lake read the lake).
    #[arg(long = "rollups-refresh", value_name = "SECONDS", default_value = "10")]
    pub rollups_refresh: f64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand, Debug)]
pub enum RollupsCommand {
    /// Build the rollups (all, or those named): the partitions missing or behind the lake,
    /// or every partition with --full. Each partition is one atomic Delta commit.
    #[command(after_help = "Examples:\n  lakecube rollups build\n  lakecube rollups build daily_store_department --lake data/sf1\n  lakecube rollups build --full")]
    Build(RollupsBuildArgs),
    /// Show each rollup: partitions, rows, bytes, the lake version it was built from, stale
    /// partitions.
    #[command(after_help = "Examples:\n  lakecube rollups status\n  lakecube rollups status --lake data/sf1")]
    Status(RollupsArgs),
}

#[derive(Args, Debug)]
pub struct RollupsArgs {
    /// The lake holding the rollups (under `_rollups/`).
    #[arg(long, env = "LAKECUBE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
    /// Folder of cube definitions.
    #[arg(long, env = "LAKECUBE_CUBE_DEFS", value_name = "DIR")]
    pub cube_defs: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RollupsBuildArgs {
    /// Rollup names (`daily_store_department` or `traffic/daily_store_department`); all when
    /// none.
    pub names: Vec<String>,
    /// Rebuild every partition, current or not.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub target: RollupsArgs,
}

/// `serve`'s resource and time limits (docs/config.md).
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Memory all queries together may reserve (e.g. 8GB; default: half the machine's).
    #[arg(long, env = "LAKECUBE_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Memory one query may reserve (default: half of --memory-limit).
    #[arg(long, env = "LAKECUBE_QUERY_MEMORY_LIMIT", value_name = "SIZE")]
    pub query_memory_limit: Option<String>,
    /// Folder for sorts' and aggregations' spill files (default: the OS temp dir).
    #[arg(long, env = "LAKECUBE_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Disk all spill files together may take (default: 10GB).
    #[arg(long, env = "LAKECUBE_SPILL_LIMIT", value_name = "SIZE")]
    pub spill_limit: Option<String>,
    /// Server default of statement_timeout (e.g. 5min; default: off, as PostgreSQL).
    #[arg(long, env = "LAKECUBE_STATEMENT_TIMEOUT", value_name = "DURATION")]
    pub statement_timeout: Option<String>,
    /// Close connections idle outside a transaction this long (default: off).
    #[arg(long, env = "LAKECUBE_IDLE_SESSION_TIMEOUT", value_name = "DURATION")]
    pub idle_session_timeout: Option<String>,
    /// Close connections idle inside a transaction this long (default: off).
    #[arg(long, env = "LAKECUBE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", value_name = "DURATION")]
    pub idle_in_transaction_session_timeout: Option<String>,
    /// Time a client has for TLS and authentication (default: 10s).
    #[arg(long, env = "LAKECUBE_STARTUP_TIMEOUT", value_name = "DURATION")]
    pub startup_timeout: Option<String>,
    /// Largest message a client may send after authentication (default: 64MB).
    #[arg(long, env = "LAKECUBE_MAX_MESSAGE_SIZE", value_name = "SIZE")]
    pub max_message_size: Option<String>,
    /// Connections that may be starting up at once (default: 256).
    #[arg(long, env = "LAKECUBE_MAX_STARTUPS", value_name = "N")]
    pub max_startups: Option<String>,
    /// Statements estimated to produce more rows than this run at background CPU priority
    /// (default: 100000000; off: none).
    #[arg(long, env = "LAKECUBE_BACKGROUND_ROWS", value_name = "ROWS")]
    pub background_rows: Option<String>,
}

impl LimitArgs {
    fn values(&self) -> crate::config::LimitValues {
        use crate::config::Value;
        let v = |s: &Option<String>| s.clone().map(Value::Text);
        crate::config::LimitValues {
            memory_limit: v(&self.memory_limit),
            query_memory_limit: v(&self.query_memory_limit),
            spill_dir: self.spill_dir.clone(),
            spill_limit: v(&self.spill_limit),
            statement_timeout: v(&self.statement_timeout),
            idle_session_timeout: v(&self.idle_session_timeout),
            idle_in_transaction_session_timeout: v(&self.idle_in_transaction_session_timeout),
            startup_timeout: v(&self.startup_timeout),
            max_message_size: v(&self.max_message_size),
            max_startups: v(&self.max_startups),
            background_rows: v(&self.background_rows),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The lake to query.
    #[arg(long, env = "LAKECUBE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
    /// Folder of cube definitions.
    #[arg(long, env = "LAKECUBE_CUBE_DEFS", value_name = "DIR")]
    pub cube_defs: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// The SQL statement.
    pub sql: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// A source name (cube-defs/sources/<name>.yaml) or the path of a source definition.
    pub source: String,
    /// A file to ingest (repeatable); by default the source's `input.path`.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Read, validate and report what would be ingested; write nothing to the lake.
    #[arg(long)]
    pub dry_run: bool,
    /// The share of rejected rows above which the batch fails (overrides the source's).
    #[arg(long, value_name = "SHARE")]
    pub max_reject_share: Option<f64>,
    /// Where the run summary (JSON) and the rejects (CSV) go.
    #[arg(long, value_name = "DIR", default_value = "ingest-reports")]
    pub report_dir: PathBuf,
    /// Keep polling the source's `input.path` and ingest each new, fully written file once,
    /// until stopped (Ctrl-C or SIGTERM).
    #[arg(long, conflicts_with_all = ["files", "dry_run"])]
    pub watch: bool,
    /// Seconds between two polls of --watch; a file is taken once unchanged for one interval.
    #[arg(long, value_name = "SECONDS", default_value = "5")]
    pub interval: f64,
    /// The lake to write to.
    #[arg(long, env = "LAKECUBE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
    /// Folder of cube definitions (holding sources/).
    #[arg(long, env = "LAKECUBE_CUBE_DEFS", value_name = "DIR")]
    pub cube_defs: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Folder of cube definitions.
    #[arg(long, env = "LAKECUBE_CUBE_DEFS", value_name = "DIR")]
    pub cube_defs: Option<PathBuf>,
    /// Also compile the definitions against this lake (checks types and SQL over its tables).
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

fn settings(common: &Common, f: impl FnOnce(&mut Overrides)) -> Result<Settings> {
    let mut o = Overrides { config: common.config.clone(), log: common.log.clone(), ..Default::default() };
    f(&mut o);
    let s = Settings::resolve(o)?;
    crate::telemetry::init(&s.log);
    Ok(s)
}

/// `lakecube user add`: asks for (or reads) a password and writes its SCRAM-SHA-256 verifier
/// under `users:` in the config file, replacing the user's line if there is one. The rest of
/// the file (comments included) is kept as it is.
fn user_add(a: UserAddArgs) -> Result<i32> {
    let path = a.common.config.clone().ok_or_else(|| {
        Error::config("no config file to write the user to")
            .with_hint("pass --config FILE (or LAKECUBE_CONFIG): the file `lakecube serve --config FILE` reads")
    })?;
    let name = a.name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || "_-.@".contains(c)) {
        return Err(Error::config(format!("`{}` is not a user name lakecube accepts", a.name))
            .with_hint("use letters, digits, _ - . and @"));
    }
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let p1 = rpassword::prompt_password(format!("password for {name}: "))?;
        let p2 = rpassword::prompt_password("again: ")?;
        if p1 != p2 {
            return Err(Error::config("the two passwords differ").with_hint("run the command again"));
        }
        p1
    };
    if password.is_empty() {
        return Err(Error::config("the password is empty").with_hint("choose a password (PostgreSQL clients send it with SCRAM-SHA-256)"));
    }
    let verifier = crate::frontend::auth::Verifier::new(&password).to_text();
    let text = if path.exists() { std::fs::read_to_string(&path)? } else { String::new() };
    let entry = format!("  {name}: \"{verifier}\"");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match lines.iter().position(|l| l.trim_end() == "users:") {
        Some(at) => {
            let end = lines[at + 1..]
                .iter()
                .position(|l| !(l.starts_with(' ') || l.starts_with('\t') || l.trim().is_empty()))
                .map(|p| at + 1 + p)
                .unwrap_or(lines.len());
            let existing = (at + 1..end).find(|&i| lines[i].trim_start().starts_with(&format!("{name}:")));
            let indent = |l: &str| l.len() - l.trim_start().len();
            match existing {
                // The mapping form (`name:` then `password:`, `roles:` … below it): its
                // password line changes, its roles and attributes stay.
                Some(i) if lines[i].trim_end().ends_with(':') => {
                    let own = indent(&lines[i]);
                    let block = (i + 1..end).take_while(|&j| lines[j].trim().is_empty() || indent(&lines[j]) > own);
                    match block.clone().find(|&j| lines[j].trim_start().starts_with("password:")) {
                        Some(j) => lines[j] = format!("{}password: \"{verifier}\"", " ".repeat(indent(&lines[j]))),
                        None => lines.insert(i + 1, format!("{}password: \"{verifier}\"", " ".repeat(own + 2))),
                    }
                }
                Some(i) => lines[i] = entry,
                None => lines.insert(at + 1, entry),
            }
        }
        None => {
            if text.lines().any(|l| l.starts_with("users:")) {
                return Err(Error::config(format!("{}: `users:` is not a block of `name: verifier` lines", path.display()))
                    .with_hint("write users as\nusers:\n  name: \"SCRAM-SHA-256$…\""));
            }
            lines.push("users:".into());
            lines.push(entry);
        }
    }
    let new_text = lines.join("\n") + "\n";
    // The file must still be a valid config before it replaces the old one.
    let tmp = write_beside(&path, &new_text)?;
    let checked = crate::config::FileSettings::load(&tmp)
        .and_then(|f| crate::config::split_users(f.users.unwrap_or_default()))
        .and_then(|(verifiers, _)| crate::frontend::auth::Users::parse(&verifiers).map(|_| ()));
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)?;
    eprintln!("user {name} written to {} (as a SCRAM-SHA-256 verifier); restart `lakecube serve` to use it", path.display());
    Ok(0)
}

/// Writes `text` to a new file in `path`'s folder, for renaming over `path`: created
/// exclusively (never through a link or over another file), with `path`'s permissions when it
/// exists (the verifiers of a 0600 config stay 0600), else 0600.
fn write_beside(path: &std::path::Path, text: &str) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path).ok();
    if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        return Err(Error::config(format!("{} is a symbolic link; lakecube writes only the file itself", path.display()))
            .with_hint("pass the path of the config file the link points to"));
    }
    let mode = meta.map_or(0o600, |m| m.permissions().mode() & 0o777);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    // create_new's mode is masked by the umask: set it exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(tmp)
}

/// `lakecube maintain`: OPTIMIZE and VACUUM of every table, under the ingest lock.
async fn maintain(a: MaintainArgs) -> Result<i32> {
    let s = settings(&a.common, |o| o.lake = a.lake.clone())?;
    let lake = Lake::open(&s.lake, false)?;
    if lake.existing_tables(&schema::ALL_TABLES).await?.is_empty() {
        return Err(Error::lake(format!("the lake at {} has no tables to maintain", lake.display()))
            .with_hint("check the lake location (--lake or LAKECUBE_LAKE)"));
    }
    let opts = crate::ingest::maintain::MaintainOptions {
        target_size: a.target_file_mib.saturating_mul(1 << 20),
        retention: a.retention_hours.map(|h| chrono::Duration::hours(h as i64)),
        dry_run: a.dry_run,
    };
    for t in crate::ingest::maintain::maintain(&lake, &opts).await? {
        println!(
            "{}: {} small files compacted into {}; {} removed files {}; version {}",
            t.table,
            t.files_compacted,
            t.files_written,
            t.files_vacuumed,
            if a.dry_run { "would be deleted" } else { "deleted" },
            t.version
        );
    }
    Ok(0)
}

/// Runs a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Generate(a) => generate(a).await,
        Command::Serve(a) => serve(a).await,
        Command::Query(a) => query(a).await,
        Command::Validate(a) => validate(a).await,
        Command::Ingest(a) => ingest(a).await,
        Command::Maintain(a) => maintain(a).await,
        Command::User(UserCommand::Add(a)) => user_add(a),
        Command::Policy(PolicyCommand::Explain(a)) => policy_explain(a),
        Command::Rollups(RollupsCommand::Build(a)) => rollups_build(a).await,
        Command::Rollups(RollupsCommand::Status(a)) => rollups_status(a).await,
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&crate::model::json_schema()).expect("schema serializes"));
            Ok(0)
        }
    }
}

async fn generate(a: GenerateArgs) -> Result<i32> {
    let s = settings(&a.common, |o| o.lake = a.lake.clone())?;
    let mut p = a.preset.params();
    if let Some(v) = a.stores { p.stores = v; }
    if let Some(v) = a.departments { p.departments = v; }
    if let Some(v) = a.from { p.from = v; }
    if let Some(v) = a.to { p.to = v; }
    if let Some(v) = a.seed { p.seed = v; }
    p.validate()?;
    let lake = Lake::open(&s.lake, true)?;
    let sum = datagen::generate(&lake, &p, datagen::Options { overwrite: a.overwrite, progress: true }).await?;
    print_summary(&lake, &sum);
    if let Some(dir) = &a.raw {
        let m = datagen::raw::write_raw(&lake, dir, a.raw_days.max(1)).await?;
        let rows: u64 = m.files.iter().map(|f| f.rows).sum();
        let bad: u64 = m.files.iter().map(|f| f.bad_rows).sum();
        eprintln!("raw exports of {} to {} in {}: {} files, {rows} rows and {bad} bad rows (manifest.json)", m.from, m.to, dir.display(), m.files.len());
    }
    Ok(0)
}

fn print_summary(lake: &Lake, s: &datagen::Summary) {
    let rss = peak_rss_mib().map(|m| format!(", peak RSS {m:.0} MiB")).unwrap_or_default();
    eprintln!(
        "generated {}: {} stores, {} departments, {} months, {} traffic rows in {:.1} s ({:.0} rows/s{rss})",
        lake.display(),
        s.stores,
        s.departments,
        s.months,
        s.traffic_rows,
        s.seconds,
        s.traffic_rows as f64 / s.seconds.max(1e-9),
    );
}

/// Peak resident memory of this process, from /proc (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Opens the lake for serving; a missing lake is generated (demo preset) when the location
/// holds no table at all.
/// A watch interval in seconds, checked: a positive number a `Duration` holds (at most a day).
fn poll_interval(flag: &str, seconds: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() <= 86_400)
        .ok_or_else(|| {
            Error::config(format!("{flag} must be a positive number of seconds up to a day (86400), not {seconds}"))
                .with_hint(format!("e.g. {flag} 5"))
        })
}

/// The lake to serve. Only the built-in default location (`data/demo`) is generated when
/// empty: an empty lake anywhere else (a mistyped `s3://` prefix) is an error, never fake data.
async fn open_or_generate(s: &Settings, demo_if_empty: bool) -> Result<Lake> {
    let generate = s.lake_is_default || demo_if_empty;
    let lake = Lake::open(&s.lake, generate)?;
    let present = lake.existing_tables(&schema::ALL_TABLES).await?;
    if present.is_empty() && !generate {
        return Err(Error::lake(format!("the lake at {} is empty: it has none of {}", lake.display(), schema::ALL_TABLES.join(", ")))
            .with_hint(format!(
                "check the lake location; to create a lake there, run `lakecube generate --lake {}`, or serve with --demo-if-empty",
                lake.display()
            )));
    }
    if present.is_empty() {
        eprintln!("no lake at {}: generating the demo lake (first start only)…", lake.display());
        let sum = datagen::generate(&lake, &Preset::Demo.params(), datagen::Options { overwrite: false, progress: true }).await?;
        print_summary(&lake, &sum);
    } else if present.len() < schema::ALL_TABLES.len() {
        let missing: Vec<&str> = schema::ALL_TABLES.iter().copied().filter(|t| !present.iter().any(|p| p == t)).collect();
        return Err(lake.missing_tables(&missing));
    }
    Ok(lake)
}

async fn serve(a: ServeArgs) -> Result<i32> {
    let s = settings(&a.common, |o| {
        o.lake = a.lake.clone();
        o.cube_defs = a.cube_defs.clone();
        o.listen = a.listen.clone();
        o.max_connections = a.max_connections;
        o.shutdown_grace_seconds = a.shutdown_grace_seconds;
        o.trust_remote = a.trust_remote;
        o.tls_cert = a.tls_cert.clone();
        o.tls_key = a.tls_key.clone();
        o.require_tls = a.require_tls;
        o.limits = a.limits.values();
    })?;
    let addr = s.listen_addr()?;
    let require_tls = s.require_tls(&addr);
    if require_tls && s.tls.is_none() {
        return Err(Error::config(format!(
            "TLS is required (listening on {addr} with users) but no certificate is configured"
        ))
        .with_hint("set tls_cert and tls_key (PEM files), or require_tls: false on a network you trust"));
    }
    // TLS and users are checked before anything listens: a server asked for TLS never starts
    // without it.
    let security = crate::frontend::server::Security {
        tls: match &s.tls {
            Some((cert, key)) => Some(crate::frontend::auth::tls_acceptor(cert, key)?),
            None => None,
        },
        users: crate::frontend::auth::Users::parse(&s.users)?,
        tls_cert_pem: match &s.tls {
            Some((cert, _)) => Some(std::fs::read(cert)?),
            None => None,
        },
    };
    let model = load_cube_defs(&s)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "another server (PostgreSQL?) uses this port: pass --listen 127.0.0.1:6432, or stop it"
        } else {
            "check the address and this user's permissions (ports below 1024 need privileges)"
        };
        Error::config(format!("cannot listen on {addr}: {e}")).with_hint(hint)
    })?;
    let lake = open_or_generate(&s, a.demo_if_empty).await?;
    let mut options = crate::engine::Options::from_limits(&s.limits);
    options.audit = std::sync::Arc::new(crate::audit::AuditLog::open(&crate::audit::Options {
        dir: s.audit.dir.clone(),
        keep_files: s.audit.keep_files,
        memory: s.audit.memory,
        redact: if s.audit.redact_literals { crate::audit::Redaction::Literals } else { crate::audit::Redaction::None },
    })?);
    match &s.audit.dir {
        Some(dir) => tracing::info!(dir = %dir.display(), "audit log"),
        None => tracing::warn!("the audit log is kept in memory only (lakecube.query_log): set audit.dir to keep it in files"),
    }
    let engine = Engine::open_with(lake, model.as_ref(), options).await?;
    let local = listener.local_addr()?;
    tracing::info!(lake = %engine.lake().display(), listen = %local, "lakecube is serving");
    eprintln!(
        "lakecube serving {} on {local}\nconnect with: psql -h {} -p {} -U lakecube -d lakecube",
        engine.lake().display(),
        local.ip(),
        local.port()
    );
    let limits = crate::frontend::server::Limits {
        max_connections: s.max_connections,
        shutdown_grace: s.shutdown_grace,
        failures: Default::default(),
        connection: crate::frontend::connection::ConnectionLimits {
            startup_timeout: s.limits.startup_timeout,
            max_message_size: s.limits.max_message_size,
            require_tls,
            ..Default::default()
        },
        session_defaults: s.limits.session_defaults.clone(),
        max_startups: s.limits.max_startups,
    };
    // One stop signal for the server and the ingest watchers.
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    let watchers = spawn_ingest_watchers(&a, &s, engine.lake().clone(), &stop)?;
    if a.rollups_refresh > 0.0 && !engine.rollups().defs().is_empty() {
        let every = poll_interval("--rollups-refresh", a.rollups_refresh)?;
        tokio::spawn(engine.rollups().clone().keep_current(engine.context().clone(), every, stop.clone()));
    }
    // With users, each reads what their roles' access policies give them (docs/security.md);
    // without, loopback sessions read everything.
    if !s.users.is_empty() {
        engine.set_access(s.access.clone(), s.roles.clone());
    }
    crate::frontend::server::run(listener, engine, limits, security, stop.clone().cancelled_owned()).await?;
    stop.cancel();
    for w in watchers {
        let _ = w.await;
    }
    Ok(0)
}

/// `serve --ingest-watch`: one watch loop per source, over the served lake, until `stop`.
/// Sources are loaded (and checked) before the server starts.
fn spawn_ingest_watchers(
    a: &ServeArgs,
    s: &crate::config::Settings,
    lake: Lake,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    if a.ingest_watch.is_empty() {
        return Ok(vec![]);
    }
    let interval = poll_interval("--ingest-interval", a.ingest_interval)?;
    let mut out = Vec::new();
    for name in &a.ingest_watch {
        let source = crate::ingest::source::Source::load(name, &s.cube_defs)?;
        crate::ingest::check_watchable(&source)?;
        let (lake, stop) = (lake.clone(), stop.clone());
        let opts = crate::ingest::Options::new(vec![], a.ingest_reports.clone());
        out.push(tokio::spawn(async move {
            if let Err(e) = crate::ingest::watch(&lake, &source, &opts, interval, stop.cancelled_owned(), |_| {}).await {
                tracing::error!(source = %source.name, error = %e.message, "ingest watcher stopped");
            }
        }));
    }
    Ok(out)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The cube definitions, which must be valid; a missing folder only warns.
fn load_cube_defs(s: &Settings) -> Result<Option<crate::model::Model>> {
    if !s.cube_defs.exists() {
        tracing::warn!(dir = %s.cube_defs.display(), "no cube definitions folder; serving the lake tables only");
        return Ok(None);
    }
    crate::model::load_dir(&s.cube_defs)
        .map(Some)
        .map_err(|problems| {
            for p in &problems {
                eprintln!("{p}");
            }
            Error::config(format!("{} problem(s) in the cube definitions in {}", problems.len(), s.cube_defs.display()))
                .with_hint("fix them (`lakecube validate` lists them) and start again")
        })
}

async fn ingest(a: IngestArgs) -> Result<i32> {
    let s = settings(&a.common, |o| {
        o.lake = a.lake.clone();
        o.cube_defs = a.cube_defs.clone();
    })?;
    let source = crate::ingest::source::Source::load(&a.source, &s.cube_defs)?;
    let lake = Lake::open(&s.lake, false)?;
    let opts = crate::ingest::Options {
        files: a.files.clone(),
        dry_run: a.dry_run,
        max_reject_share: a.max_reject_share,
        report_dir: a.report_dir.clone(),
        progress: !a.watch,
    };
    if a.watch {
        let interval = poll_interval("--interval", a.interval)?;
        eprintln!("watching {} every {} s (Ctrl-C stops)", source.input.path.as_deref().unwrap_or("?"), a.interval);
        crate::ingest::watch(&lake, &source, &opts, interval, shutdown_signal(), |outcome| match outcome {
            Ok(s) => println!(
                "{} file(s): {} rows accepted, {} rejected; {}",
                s.files.len(),
                s.rows_accepted,
                s.rows_rejected,
                match s.committed_version {
                    Some(v) => format!("committed {} store-hours as version {v}", s.store_hours),
                    None => "nothing new".into(),
                }
            ),
            Err(e) => eprintln!("{}", e.render()),
        })
        .await?;
        return Ok(0);
    }
    let summary = crate::ingest::run(&lake, &source, &opts).await?;
    let mut out = String::new();
    for f in &summary.files {
        if f.already_ingested {
            out.push_str(&format!("{}: already ingested (sha256 {}), skipped\n", f.path, &f.sha256[..12]));
            continue;
        }
        if let Some(first) = &f.duplicate_of {
            out.push_str(&format!("{}: same content as {first}, counted once\n", f.path));
            continue;
        }
        let dialect = match (&f.encoding, &f.delimiter) {
            (Some(e), Some(d)) => format!("{}, {e}, delimiter {d:?}", f.format),
            (Some(e), None) => format!("{}, {e}", f.format),
            _ => f.format.clone(),
        };
        out.push_str(&format!(
            "{}: {dialect}; {} rows read, {} accepted, {} rejected\n",
            f.path,
            f.rows_read,
            f.rows_accepted,
            f.rows_rejected
        ));
        for (field, header) in &f.mapping {
            out.push_str(&format!("  {field} <- {header:?}\n"));
        }
        if a.dry_run {
            for row in &f.sample {
                out.push_str(&format!("  row: {row}\n"));
            }
        }
    }
    if let Some(r) = &summary.rejects_file {
        out.push_str(&format!("rejects: {r}\n"));
    }
    let written = match (summary.store_hours, summary.members_changed) {
        (0, m) if m > 0 => format!("{m} stores/departments"),
        (h, 0) => format!("{h} store-hours"),
        (h, m) => format!("{h} store-hours and {m} new stores/departments"),
    };
    out.push_str(&match (a.dry_run, summary.committed_version) {
        (true, _) => format!("dry run: {written} would be written; nothing was written\n"),
        (false, Some(v)) => format!("committed {written} to {} as version {v}\n", source.kind.target()),
        (false, None) => "nothing new to commit\n".to_string(),
    });
    print!("{out}");
    Ok(0)
}

/// An engine over the lake and cube definitions `a` names, for the rollup commands.
async fn rollups_engine(a: &RollupsArgs) -> Result<Engine> {
    let s = settings(&a.common, |o| {
        o.lake = a.lake.clone();
        o.cube_defs = a.cube_defs.clone();
    })?;
    let model = load_cube_defs(&s)?;
    let lake = Lake::open(&s.lake, false)?;
    Engine::open(lake, model.as_ref()).await
}

async fn rollups_build(a: RollupsBuildArgs) -> Result<i32> {
    let engine = rollups_engine(&a.target).await?;
    let rollups = engine.rollups().clone();
    let defs: Vec<_> = rollups
        .defs()
        .iter()
        .filter(|d| a.names.is_empty() || a.names.iter().any(|n| *n == d.name || *n == d.id))
        .cloned()
        .collect();
    if let Some(unknown) = a.names.iter().find(|n| !rollups.defs().iter().any(|d| **n == d.name || **n == d.id)) {
        let known: Vec<&str> = rollups.defs().iter().map(|d| d.name.as_str()).collect();
        let mut e = Error::config(format!("there is no rollup `{unknown}`"));
        e = match crate::error::closest(unknown, &known) {
            Some(c) => e.with_hint(crate::error::did_you_mean_hint(c)),
            None => e.with_hint(format!("the rollups are: {}", known.join(", "))),
        };
        return Err(e);
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for def in defs {
        let started = std::time::Instant::now();
        let bar = terminal.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}").expect("template").progress_chars("=> "));
            b.set_prefix(def.id.clone());
            b
        });
        let progress = |name: &str, i: usize, n: usize| match &bar {
            Some(b) => {
                b.set_length(n as u64);
                b.set_position(i as u64);
                b.set_message(name.to_string());
            }
            None if !name.is_empty() => eprintln!("{}: partition {name} ({}/{n})", def.id, i + 1),
            None => {}
        };
        let done = rollups.refresh(engine.context(), &def, a.full, &progress).await?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        eprintln!("{}: {} partition(s) built in {:.1} s", def.id, done.len(), started.elapsed().as_secs_f64());
    }
    Ok(0)
}

async fn rollups_status(a: RollupsArgs) -> Result<i32> {
    let engine = rollups_engine(&a).await?;
    let status = engine.rollups().status().await?;
    println!("{:<40} {:>10} {:>12} {:>12} {:>10} {:>6} {:>6}  state", "rollup", "partitions", "rows", "bytes", "built_from", "stale", "hits");
    for s in status {
        let state = s.problem.clone().unwrap_or_else(|| if s.stale == 0 { "current".into() } else { format!("{} partition(s) behind the lake", s.stale) });
        let built = s.built_from.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!("{:<40} {:>10} {:>12} {:>12} {:>10} {:>6} {:>6}  {state}", s.name, s.partitions, s.rows, s.bytes, built, s.stale, s.hits);
    }
    Ok(0)
}

async fn query(a: QueryArgs) -> Result<i32> {
    let s = settings(&a.common, |o| {
        o.lake = a.lake.clone();
        o.cube_defs = a.cube_defs.clone();
    })?;
    let model = load_cube_defs(&s)?;
    let lake = Lake::open(&s.lake, false)?;
    let engine = Engine::open(lake, model.as_ref()).await?;
    let (schema, mut stream) = engine.sql(&a.sql).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match a.format {
        OutputFormat::Table => {
            // A table needs every row to size its columns.
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                batches.push(b.map_err(Error::from)?);
            }
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let table = arrow::util::pretty::pretty_format_batches(&batches)?;
            if batches.is_empty() {
                let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "{}", names.join(" | "))?;
            } else {
                writeln!(out, "{table}")?;
            }
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        OutputFormat::Csv => {
            // Dates and times as PostgreSQL prints them, so CSV from here and from psql agree.
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_timestamp_format("%Y-%m-%d %H:%M:%S%.f".to_string())
                .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S%.f%#z".to_string())
                .build(&mut out);
            let mut wrote = false;
            while let Some(b) = stream.next().await {
                w.write(&b.map_err(Error::from)?)?;
                wrote = true;
            }
            drop(w);
            if !wrote {
                let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "{}", names.join(","))?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            while let Some(b) = stream.next().await {
                w.write(&b.map_err(Error::from)?)?;
            }
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// `lakecube policy explain`: what each table shows the user, from the config file and the
/// cube definitions alone.
fn policy_explain(a: PolicyExplainArgs) -> Result<i32> {
    use crate::model::access::{Principal, Rows, grant};
    let s = settings(&a.common, |o| o.cube_defs = a.cube_defs.clone())?;
    let model = crate::model::load_dir(&s.cube_defs).map_err(|problems| {
        Error::config(format!("{} problem(s) in {}: {}", problems.len(), s.cube_defs.display(), problems.first().map(|p| p.to_string()).unwrap_or_default()))
            .with_hint("`lakecube validate` lists them")
    })?;
    if s.users.is_empty() {
        println!("no users are configured: clients connect on loopback without a password and see every table, member and row");
        return Ok(0);
    }
    let Some(access) = s.access.get(&a.user) else {
        let names: Vec<&str> = s.users.keys().map(String::as_str).collect();
        return Err(Error::config(format!("no user `{}` in the config file{}", a.user, crate::error::did_you_mean(&a.user, &names)))
            .with_hint("users are listed under `users:` (docs/security.md)"));
    };
    let who = Principal { user: a.user.clone(), roles: access.roles.clone(), attributes: access.attributes.clone() };
    let attributes: Vec<String> = who.attributes.iter().map(|(k, v)| format!("{k} = [{}]", v.join(", "))).collect();
    println!(
        "user {}: roles [{}]; attributes {}",
        who.user,
        who.roles.join(", "),
        if attributes.is_empty() { "none".to_string() } else { attributes.join("; ") }
    );
    for t in crate::semantic::served_tables(&model) {
        let (table, members) = (&t.name, &t.members);
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        match grant(&t.access_policy, &names, &who) {
            None => println!("{table}: not visible (its access policies are for other roles)"),
            Some(g) => {
                let rows = match &g.rows {
                    Rows::All => "all rows".to_string(),
                    Rows::AnyOf(c) if c.is_empty() => "no rows".to_string(),
                    Rows::AnyOf(c) => format!("rows where {}", c.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" OR ")),
                };
                let shown = match &g.members {
                    None => format!("all {} members", members.len()),
                    Some(m) => {
                        // As the server hides them: a measure computed from a hidden one is
                        // hidden too (CubeTable::restricted).
                        let mut hidden: Vec<&str> = names.iter().copied().filter(|n| !m.contains(*n)).collect();
                        loop {
                            let more: Vec<&str> = members.iter().filter(|(n, uses)| !hidden.contains(&n.as_str()) && uses.iter().any(|u| hidden.contains(&u.as_str()))).map(|(n, _)| n.as_str()).collect();
                            if more.is_empty() {
                                break;
                            }
                            hidden.extend(more);
                        }
                        format!("{} of {} members (hidden: {})", members.len() - hidden.len(), members.len(), hidden.join(", "))
                    }
                };
                println!("{table}: {rows}; {shown}");
            }
        }
    }
    let lake = who.roles.iter().any(|r| s.roles.get(r).is_some_and(|r| r.lake));
    println!("lake.*: {}", if lake { "visible (a role of the user has `lake: true`)" } else { "not visible (no role of the user has `lake: true`)" });
    Ok(0)
}

async fn validate(a: ValidateArgs) -> Result<i32> {
    let s = settings(&a.common, |o| o.cube_defs = a.cube_defs.clone())?;
    if !s.cube_defs.is_dir() {
        return Err(Error::config(format!("cube definitions folder {} does not exist", s.cube_defs.display()))
            .with_hint("pass --cube-defs DIR (or set LAKECUBE_CUBE_DEFS)"));
    }
    match crate::model::load_dir(&s.cube_defs) {
        Ok(d) => {
            if let Some(url) = &a.lake {
                let lake = Lake::open(url, false)?;
                Engine::open(lake, Some(&d)).await?;
            }
            println!(
                "{}: {} file(s), {} cube(s), {} view(s): OK",
                s.cube_defs.display(),
                d.files.len(),
                d.cubes.len(),
                d.views.len()
            );
            Ok(0)
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!("{} problem(s) found", problems.len());
            Ok(1)
        }
    }
}
