//! Private services for fault tests: a PostgreSQL cluster or a Redis server that belongs to one
//! test alone, so the test may stop, kill and restart it while every other test keeps using the
//! shared services `just test` started.
//!
//! [`PrivatePostgres`] runs `initdb` into a temporary directory and serves it on a free loopback
//! port (TCP only, no Unix socket); [`PrivateRedis`] is a `redis-server` child without
//! persistence. Both can be stopped and started again on the same port, and both are stopped
//! (and their files removed) when dropped. PostgreSQL refuses to run as root, so as root its
//! commands run as the `postgres` user (through `runuser`, else `su`), as `scripts/services.sh`
//! does.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (the OS picks it; it is free when this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A directory under the system temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tenantry-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `$PG_BIN` (exported by
/// `scripts/with-services.sh`), then `pg_config --bindir`, then the newest
/// `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> PathBuf {
    let usable = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("PG_BIN") {
        candidates.push(dir.into());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev().map(|(_, p)| p));
    candidates
        .into_iter()
        .find(|d| usable(d))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via $PG_BIN, \
                 pg_config or /usr/lib/postgresql/*/bin: run the tests through `just test`"
            )
        })
}

/// A PostgreSQL cluster of one test's own, on 127.0.0.1.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    // Last, so the directory goes after the server has stopped.
    _dir: TempDir,
}

impl PrivatePostgres {
    /// Creates a cluster (user `postgres`, trust authentication, database `tenantry`) and
    /// starts it on a free port.
    pub fn start() -> Self {
        let dir = TempDir::new("pg");
        let as_postgres = is_root();
        let data = dir.0.join("data");
        let log = dir.0.join("pg.log");
        std::fs::create_dir_all(&data).expect("create the data directory");
        std::fs::write(&log, b"").expect("create the log file");
        if as_postgres {
            // mktemp-style directories are private; the postgres user must reach and own them.
            let ok = Command::new("chmod")
                .arg("755")
                .arg(&dir.0)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(&dir.0)
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                ok,
                "could not hand {} to the postgres user",
                dir.0.display()
            );
        }
        let mut pg = Self {
            bin: pg_bin(),
            data,
            log,
            port: free_port(),
            as_postgres,
            running: false,
            _dir: dir,
        };
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again();
        let create_database = |psql: &Path| {
            Command::new(psql)
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .arg("-p")
                .arg(pg.port.to_string())
                .args(["-c", "create database tenantry"])
                .output()
        };
        // The psql next to the server binaries, or else the one on PATH.
        let out = create_database(&pg.bin.join("psql"))
            .or_else(|_| create_database(Path::new("psql")))
            .expect("run psql");
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// Runs one of the server's commands, as the postgres user when we are root.
    fn run(&self, binary: &str, args: &[&str]) -> Output {
        let program = self.bin.join(binary);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        match command.output() {
            Ok(out) => out,
            // No runuser (e.g. some minimal images): su, as scripts/services.sh falls back to.
            Err(_) if self.as_postgres => {
                let line = std::iter::once(program.display().to_string())
                    .chain(args.iter().map(|a| format!("'{a}'")))
                    .collect::<Vec<_>>()
                    .join(" ");
                Command::new("su")
                    .args(["postgres", "-s", "/bin/sh", "-c", &line])
                    .current_dir("/")
                    .stdin(Stdio::null())
                    .output()
                    .expect("run a PostgreSQL command as postgres")
            }
            Err(e) => panic!("run {}: {e}", program.display()),
        }
    }

    /// The port the cluster listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of database `database` (e.g. `tenantry`) on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the (stopped) cluster again on the same port and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=100",
            self.port
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        self.running = true;
    }

    /// Stops the cluster the way an operator restarting it does (`pg_ctl stop -m fast`: every
    /// session is terminated, open transactions roll back) and waits until it is down.
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    /// Stops the cluster like a crash (`-m immediate`: no shutdown checkpoint).
    pub fn kill(&mut self) {
        self.stop_with("immediate");
    }

    fn stop_with(&mut self, mode: &str) {
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }

    /// The server log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data.display().to_string(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}

/// A Redis server of one test's own, on 127.0.0.1, without persistence: killed and started
/// again, it comes back empty, like a cache that lost its memory.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
            dir: TempDir::new("redis"),
        };
        redis.start_again();
        redis
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again on the same port (after [`PrivateRedis::kill`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Redis is already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !accepts_connections(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL: no goodbye to its clients) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
