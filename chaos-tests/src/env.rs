//! Resources a scenario owns for its duration: a PostgreSQL server of its
//! own (so it can be restarted without touching anybody else's) and a
//! small tmpfs (so its disk can fill up).

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root
/// (initdb refuses root).
fn pg_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut c: Command, what: &str) -> anyhow::Result<()> {
    let out = c.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The newest PostgreSQL server binaries installed (Debian's layout).
fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server here (/usr/lib/postgresql): install Debian's postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found
        .pop()
        .context("no pg_ctl under /usr/lib/postgresql/*/bin")
}

/// A PostgreSQL server of our own on a loopback port, in `dir`.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub addr: SocketAddr,
}

impl Postgres {
    pub fn start(dir: &Path) -> anyhow::Result<Postgres> {
        let bin = pg_bin()?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&data);
                    c
                },
                "chown of the PostgreSQL data folder",
            )?;
        }
        let mut init = pg_command(&bin, "initdb");
        init.args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data);
        run(init, "initdb")?;
        let addr = devtools::free_addr();
        let pg = Postgres { bin, data, addr };
        pg.pg_ctl("start")?;
        Ok(pg)
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "30", "-m", "fast"]);
        c.arg("-l").arg(self.data.join("server.log"));
        c.arg("-o").arg(format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.addr.port(),
            self.data.display()
        ));
        c.arg(action);
        run(c, &format!("pg_ctl {action}"))
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/postgres", self.addr)
    }

    /// Stops the server (fast: open sessions are ended) and starts it
    /// again; returns once it accepts connections.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl("restart")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}

/// The PostgreSQL server the suite creates its databases on (not the one
/// `pg-restart` restarts: that one is the scenario's own):
/// `TWINPORT_CHAOS_POSTGRES`, else `TWINPORT_POSTGRES` (the server
/// scripts/test gives every test), else the machine's at 127.0.0.1:5432.
pub fn postgres_server() -> String {
    std::env::var("TWINPORT_CHAOS_POSTGRES")
        .or_else(|_| std::env::var("TWINPORT_POSTGRES"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new, empty database on [`postgres_server`], dropped on drop.
pub struct Database {
    server: String,
    name: String,
    pub url: String,
}

impl Database {
    pub async fn create(tag: &str) -> anyhow::Result<Database> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let server = postgres_server();
        let mut admin = sqlx::AnyConnection::connect(&server).await.with_context(|| {
            format!("no PostgreSQL at {server} (set TWINPORT_CHAOS_POSTGRES): this scenario runs on PostgreSQL")
        })?;
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "twinport_chaos_{}_{}_{n}",
            tag.replace('-', "_"),
            std::process::id()
        );
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Ok(Database {
            url: format!("{base}/{name}"),
            server,
            name,
        })
    }

    /// Drops the database (every twin must be stopped first).
    pub async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::AnyConnection::connect(&self.server).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A tmpfs of `size_mib` mounted on `dir` (root only), unmounted on drop.
pub struct SmallDisk {
    pub dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &Path, size_mib: u32) -> anyhow::Result<SmallDisk> {
        if !is_root() {
            bail!("the disk-full scenario mounts a tmpfs and needs root");
        }
        std::fs::create_dir_all(dir)?;
        run(
            {
                let mut c = Command::new("mount");
                c.args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size_mib}m"),
                    "twinport-chaos",
                ])
                .arg(dir);
                c
            },
            "mount -t tmpfs",
        )?;
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
            filler: dir.join("filler"),
        })
    }

    /// Fills every free byte; returns how many were written.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let Ok(mut f) = std::fs::File::create(&self.filler) else {
            return 0;
        };
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        // Large blocks, then single bytes for the last partial block.
        for chunk in [block.len(), 4096, 1] {
            while f.write_all(&block[..chunk]).is_ok() {
                written += chunk as u64;
            }
        }
        let _ = f.sync_all();
        written
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(&self.filler);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not keep it.
        for _ in 0..3 {
            let ok = Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
