//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a
//! temporary directory, `pg_ctl start` on a free port on 127.0.0.1, stopped
//! and removed on drop. No shared system cluster, no mock.
//!
//! The binaries come from `CLINIC_PG_BIN` if set, else `initdb` on `PATH`,
//! else the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql`
//! package; `scripts/setup-deps.sh --test` installs it). PostgreSQL refuses
//! to run as root: when the tests run as root, every PostgreSQL command runs
//! as the `postgres` user (`runuser -u postgres`), which owns the directory.
//!
//! A cluster that cannot start panics with the reason (missing binaries,
//! missing `postgres` user, the server's log): tests that need PostgreSQL
//! fail loudly rather than skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// A running cluster; one database per [`PgCluster::create_database`].
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    running: bool,
    databases: AtomicU64,
}

fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CLINIC_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(format!("CLINIC_PG_BIN={} has no initdb", dir.display()))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!(
                "no PostgreSQL server binaries (/usr/lib/postgresql: {e}); \
                 install them with `scripts/setup-deps.sh --test` (Debian package `postgresql`) \
                 or point CLINIC_PG_BIN at a directory with initdb and pg_ctl"
            )
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no initdb under /usr/lib/postgresql/*/bin; install the Debian package `postgresql` \
         (`scripts/setup-deps.sh --test`)"
            .to_owned()
    })
}

fn is_root() -> bool {
    // The effective uid, without libc: /proc knows it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PgCluster {
    /// Starts a new cluster; panics with the reason if it cannot.
    pub fn start() -> PgCluster {
        match Self::try_start() {
            Ok(c) => c,
            Err(reason) => panic!("cannot start a throwaway PostgreSQL cluster: {reason}"),
        }
    }

    /// Starts a new cluster, or says why it cannot.
    pub fn try_start() -> Result<PgCluster, String> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("clinic-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "running as root, the cluster must belong to the `postgres` user, but \
                     `chown postgres` failed (is there a `postgres` user? the Debian package \
                     `postgresql` creates it): {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            as_postgres,
            port: 0,
            running: false,
            databases: AtomicU64::new(0),
        };
        let data = cluster.data_dir();
        let out = cluster.pg(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "clinic",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // A port picked now may be taken before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Runs a PostgreSQL program from the cluster's binaries, as `postgres`
    /// when we are root.
    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("running {}: {e}", path.display()))
    }

    fn start_server(&mut self) -> Result<(), String> {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on",
            self.dir.path().display(),
            self.port
        );
        let data = self.data_dir().to_string_lossy().into_owned();
        let log = self.log_path().to_string_lossy().into_owned();
        let out = self.pg(
            "pg_ctl",
            &[
                "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start",
            ],
        )?;
        if out.status.success() {
            self.running = true;
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            Err(format!(
                "pg_ctl start failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (user `clinic`, trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://clinic@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("clinic_{n}");
        self.with_client(&self.url("postgres"), |client| {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        });
        self.url(&name)
    }

    /// Creates a new, empty database whose files live in `dir` (a
    /// tablespace; `dir` must exist and be empty) and returns its URL: a
    /// database on a small file system, for disk-full tests. The cluster's
    /// own files (its WAL among them) stay where they are.
    pub fn create_database_in(&self, dir: &Path) -> String {
        if self.as_postgres {
            let out = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir)
                .output()
                .expect("chown");
            assert!(
                out.status.success(),
                "chown postgres {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("clinic_{n}");
        let location = dir.to_string_lossy().replace('\'', "''");
        self.with_client(&self.url("postgres"), |client| {
            // One statement at a time: neither may run in a transaction block.
            for sql in [
                format!("CREATE TABLESPACE space_{n} LOCATION '{location}'"),
                format!("CREATE DATABASE {name} TABLESPACE space_{n}"),
            ] {
                client.batch_execute(&sql).unwrap_or_else(|e| {
                    panic!(
                        "{sql}: {}",
                        e.as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_owned())
                    )
                });
            }
        });
        self.url(&name)
    }

    /// Runs `f` with a new connection to the database at `url`, on a thread
    /// of its own: the blocking client must not run on an async runtime's
    /// thread, and tests call this from async code.
    pub fn with_client<T: Send>(
        &self,
        url: &str,
        f: impl FnOnce(&mut postgres::Client) -> T + Send,
    ) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = postgres::Client::connect(url, postgres::NoTls)
                        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
                    f(&mut client)
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Stops the server: `fast` (clients disconnected, clean shutdown) or
    /// `immediate` (like a crash: recovery from the WAL at the next start).
    pub fn stop(&mut self, mode: &str) {
        let data = self.data_dir().to_string_lossy().into_owned();
        let out = self
            .pg(
                "pg_ctl",
                &["-D", &data, "-m", mode, "-w", "-t", "60", "stop"],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) {
        assert!(!self.running, "already running");
        if let Err(e) = self.start_server() {
            panic!("{e}");
        }
    }

    /// Stops (`mode`) and starts again on the same port.
    pub fn restart(&mut self, mode: &str) {
        self.stop(mode);
        self.start_again();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir().to_string_lossy().into_owned();
            let _ = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
    }
}
