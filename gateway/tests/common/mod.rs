//! Test harness shared by the gateway's integration tests: throwaway
//! databases for the store, a SQLite file in a temporary folder and a
//! PostgreSQL cluster of its own on a loopback port.
//!
//! Owns starting and, on drop, stopping and deleting them. It never touches
//! a database it did not create (no system cluster, no port 5432).
//!
//! PostgreSQL: Debian's server binaries (`apt-get install postgresql`; found
//! under `/usr/lib/postgresql/<version>/bin`, or in `$PG_BIN`). `initdb`
//! refuses to run as root, so when the tests run as root the cluster's folder
//! (under `/tmp`, whatever `TMPDIR` says) is given to the `postgres` user and
//! `initdb`/`pg_ctl` run through `runuser -u postgres --`. The server listens on 127.0.0.1 on a free port
//! and on a unix socket inside the cluster's folder, trusts local
//! connections, and runs with fsync off (nothing here must survive).
//! Without the binaries, [`TestDb::postgres`] fails when `CI` is set and
//! otherwise prints a loud skip line and returns `None`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    pub fn new_in(base: &Path, tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = base.join(format!(
            "gw-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The folder holding `initdb` and `pg_ctl`, newest version first.
pub fn pg_bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("PG_BIN") {
        let d = PathBuf::from(d);
        return d.join("initdb").exists().then_some(d);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

use testkit::free_port;

/// A PostgreSQL cluster of its own, stopped and deleted on drop.
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl PgCluster {
    fn command(&self, tool: &str) -> Command {
        cmd(&self.bin, self.as_postgres, tool)
    }

    /// Starts one; panics with the server's log when it cannot.
    pub fn start(bin: &Path) -> PgCluster {
        let as_postgres = running_as_root();
        // The postgres user must reach the folder: under root, use /tmp
        // (world-traversable) whatever TMPDIR says.
        let dir = if as_postgres {
            TempDir::new_in(Path::new("/tmp"), "pg")
        } else {
            TempDir::new("pg")
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.0)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cannot chown {} to postgres", dir.0.display());
        }
        let data = dir.0.join("data");
        let out = cmd(bin, as_postgres, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "gw",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port may be taken between the probe and the bind: retry.
        for attempt in 0..5 {
            let port = free_port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=60",
                dir.0.display()
            );
            let st = cmd(bin, as_postgres, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.0.join("log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .output()
                .expect("run pg_ctl");
            if st.status.success() {
                return PgCluster {
                    dir,
                    bin: bin.to_path_buf(),
                    as_postgres,
                    port,
                };
            }
            if attempt == 4 {
                let log = std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
                panic!(
                    "pg_ctl start failed: {}{}\n{log}",
                    String::from_utf8_lossy(&st.stdout),
                    String::from_utf8_lossy(&st.stderr)
                );
            }
        }
        unreachable!()
    }

    /// Creates database `name` and returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "gw",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// Stops the server now (fast shutdown); the folder goes on drop.
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.0.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(out.status.success(), "pg_ctl stop failed");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://gw@127.0.0.1:{}/{db}", self.port)
    }
}

fn cmd(bin: &Path, as_postgres: bool, tool: &str) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.0.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

enum Guard {
    Sqlite(TempDir),
    Postgres(PgCluster),
}

/// One throwaway database for a store test.
pub struct TestDb {
    pub url: String,
    guard: Guard,
}

impl TestDb {
    /// A SQLite file in a fresh folder.
    pub fn sqlite() -> TestDb {
        let dir = TempDir::new("sqlite");
        let url = format!("sqlite:{}", dir.0.join("gateway.db").display());
        TestDb {
            url,
            guard: Guard::Sqlite(dir),
        }
    }

    /// A database in a PostgreSQL cluster of its own; `None` (after a loud
    /// line) when the server is not installed, unless `CI` is set.
    pub fn postgres() -> Option<TestDb> {
        let Some(bin) = pg_bin_dir() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "PostgreSQL server binaries not found (CI is set): apt-get install postgresql"
                );
            }
            eprintln!(
                "\n*** SKIPPING the PostgreSQL half of this test: no initdb under \
                 /usr/lib/postgresql/*/bin (apt-get install postgresql, or set PG_BIN) ***\n"
            );
            return None;
        };
        let cluster = PgCluster::start(&bin);
        let url = cluster.create_db("gateway");
        Some(TestDb {
            url,
            guard: Guard::Postgres(cluster),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.guard, Guard::Postgres(_))
    }

    /// The cluster, for tests that need a second database.
    pub fn cluster(&self) -> Option<&PgCluster> {
        match &self.guard {
            Guard::Postgres(c) => Some(c),
            Guard::Sqlite(_) => None,
        }
    }
}
