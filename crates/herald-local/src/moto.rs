//! moto server, started from the project's virtualenv (`scripts/bootstrap` installs it there).

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
    /// Start every process (the shared one on `port`, or a free one) and wait until they answer.
    pub async fn start(root: &Path, port: Option<u16>) -> Result<MotoCluster> {
        let (shared, groups) = futures::future::try_join(
            MotoServer::start(root, port),
            futures::future::try_join_all(SERVICE_GROUPS.iter().map(|group| async move {
                Ok::<_, anyhow::Error>((*group, MotoServer::start(root, None).await?))
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

/// The project's Python (the virtualenv `scripts/bootstrap` creates).
pub fn venv_python(root: &Path) -> PathBuf {
    root.join(".venv/bin/python")
}

/// herald's moto launcher, which serialises requests (see the script for why).
pub fn launcher(root: &Path) -> PathBuf {
    root.join("infra/moto_server.py")
}

impl MotoServer {
    /// Start moto on `port` (or a free port) and wait until it answers.
    pub async fn start(root: &Path, port: Option<u16>) -> Result<MotoServer> {
        let python = venv_python(root);
        if !python.exists() || !root.join(".venv/bin/moto_server").exists() {
            bail!(
                "moto is not installed in {}; run scripts/bootstrap (or set AWS_ENDPOINT_URL to an emulator you run)",
                root.join(".venv").display()
            );
        }
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let script = launcher(root);
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
