//! moto server: from the project's virtualenv when it has one (`scripts/bootstrap` installs it
//! there), else from herald's own, installed on first use under the user's cache directory from
//! the requirements herald pins (`infra/requirements.txt`), so `herald local up` works in any
//! project.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A running moto server; killed on drop, and (on Linux) when the process that started it dies.
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
    child: Child,
}

/// The services that get a moto process of their own, each group with what must share its
/// process: moto delivers SNS messages to SQS queues in process, and a table's stream is read
/// from the table's backend. Everything else (S3, STS, ...) shares the first process. moto
/// answers a request at a time per process (see `infra/moto_server.py`), in one Python thread:
/// apart, these services are served side by side, on as many cores as there are. (scripts/moto
/// starts the same groups.)
pub const SERVICE_GROUPS: &[&[&str]] = &[
    &["DynamoDB", "DynamoDB Streams"],
    &["Kinesis"],
    &["SNS", "SQS"],
];

/// moto as herald runs it: a shared process and one per [`SERVICE_GROUPS`] group; stopped on
/// drop.
#[derive(Debug)]
pub struct MotoCluster {
    shared: MotoServer,
    groups: Vec<(&'static [&'static str], MotoServer)>,
}

impl MotoCluster {
    /// Start the shared process (on `port`, or a free one) and one per group of `groups` (of
    /// [`SERVICE_GROUPS`]), and wait until they answer.
    pub async fn start(
        root: &Path,
        port: Option<u16>,
        groups: &'static [&'static [&'static str]],
    ) -> Result<MotoCluster> {
        let moto = Installation::find_or_install(root)?;
        let moto = &moto;
        let (shared, groups) = futures::future::try_join(
            MotoServer::start_from(moto, port),
            futures::future::try_join_all(groups.iter().map(|group| async move {
                Ok::<_, anyhow::Error>((*group, MotoServer::start_from(moto, None).await?))
            })),
        )
        .await?;
        Ok(MotoCluster { shared, groups })
    }

    /// The shared process's URL (`AWS_ENDPOINT_URL`).
    pub fn url(&self) -> String {
        self.shared.url()
    }

    /// Each grouped service's `AWS_ENDPOINT_URL_<SERVICE>` and its process's URL.
    pub fn services(&self) -> herald::aws::ServiceEndpoints {
        let mut services = herald::aws::ServiceEndpoints::default();
        for (group, server) in &self.groups {
            for service in group.iter() {
                services.insert(
                    herald::aws::ServiceEndpoints::variable(service),
                    server.url(),
                );
            }
        }
        services
    }
}

/// The pinned requirements and the launcher, built into herald so that a project of its own
/// needs neither.
const REQUIREMENTS: &str = include_str!("../../../infra/requirements.txt");
const LAUNCHER: &str = include_str!("../../../infra/moto_server.py");

/// A moto to start: a Python with moto installed and herald's launcher, which serialises
/// requests (see the script for why).
#[derive(Clone, Debug)]
pub struct Installation {
    /// The Python of the virtualenv moto is installed in.
    pub python: PathBuf,
    /// herald's launcher.
    pub launcher: PathBuf,
}

impl Installation {
    /// The project's (`<root>/.venv` with moto, and `<root>/infra/moto_server.py`), else
    /// herald's own under [`cache_dir`], installed now if it is not there yet (once per
    /// version of the requirements and launcher; it takes a pip install, about a minute).
    pub fn find_or_install(root: &Path) -> Result<Installation> {
        let project = Installation {
            python: root.join(".venv/bin/python"),
            launcher: root.join("infra/moto_server.py"),
        };
        if project.python.exists()
            && root.join(".venv/bin/moto_server").exists()
            && project.launcher.exists()
        {
            return Ok(project);
        }
        Installation::managed()
    }

    /// herald's own moto under [`cache_dir`], installed if missing.
    pub fn managed() -> Result<Installation> {
        let dir = managed_dir()?;
        let installed = Installation {
            python: dir.join("bin/python"),
            launcher: dir.join("moto_server.py"),
        };
        if installed.python.exists() && installed.launcher.exists() {
            return Ok(installed);
        }
        crate::venv::install(
            &dir,
            &std::env::var("HERALD_PYTHON").unwrap_or_else(|_| "python3".into()),
            &[
                ("requirements.txt", REQUIREMENTS),
                ("moto_server.py", LAUNCHER),
            ],
            "the emulator (moto, pinned) — once, about a minute",
        )?;
        Ok(installed)
    }
}

/// Where herald keeps what it installs for itself: `HERALD_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/herald`, else `~/.cache/herald`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HERALD_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("herald"));
    }
    var("HOME")
        .map(|home| home.join(".cache/herald"))
        .ok_or_else(|| anyhow!("no cache directory: set HERALD_CACHE_DIR (or HOME)"))
}

/// This herald's moto environment: one per version of the requirements and the launcher.
fn managed_dir() -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{REQUIREMENTS}\0{LAUNCHER}").as_bytes());
    Ok(cache_dir()?.join(format!("moto-{}", &hex::encode(digest)[..12])))
}

impl MotoServer {
    /// Start moto on `port` (or a free port) and wait until it answers: the project's, or
    /// herald's own ([`Installation::find_or_install`]).
    pub async fn start(root: &Path, port: Option<u16>) -> Result<MotoServer> {
        MotoServer::start_from(&Installation::find_or_install(root)?, port).await
    }

    /// Start `moto` on `port` (or a free port) and wait until it answers.
    pub async fn start_from(moto: &Installation, port: Option<u16>) -> Result<MotoServer> {
        let python = moto.python.clone();
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let script = moto.launcher.clone();
        let child = spawn_tied(Spawn {
            program: python.clone(),
            args: vec![
                script.display().to_string(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            ..Spawn::default()
        })
        .with_context(|| format!("starting {}", script.display()))?;
        let mut server = MotoServer { port, child };
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "moto exited at start ({status}); is port {} free?",
                    self.port
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!(
            "moto did not answer on port {} within {limit:?}",
            self.port
        ))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A process to start (built on the spawner thread, so it is plain data).
#[derive(Clone, Debug, Default)]
pub struct Spawn {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Start from an empty environment (as Lambda does) instead of inheriting this one.
    pub clear_env: bool,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
    /// Pipe stdout and stderr to the caller (else they are discarded).
    pub piped: bool,
}

/// Start a process that is killed when this process exits, however it exits.
///
/// Linux delivers `PR_SET_PDEATHSIG` when the *thread* that forked the child ends, so every fork
/// happens on one thread that lives as long as the process.
pub fn spawn_tied(spec: Spawn) -> std::io::Result<Child> {
    use std::sync::{Mutex, OnceLock};
    type Job = (Spawn, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("herald-spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(build(spec).spawn());
                }
            })
            .expect("spawn the spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((spec, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

fn build(spec: Spawn) -> Command {
    let mut command = Command::new(&spec.program);
    command.args(&spec.args).stdin(Stdio::null());
    if spec.clear_env {
        command.env_clear();
    }
    command.envs(spec.env);
    if spec.piped {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    command
}
