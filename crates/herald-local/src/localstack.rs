//! LocalStack without Docker, as a Python process of its own, for the services it serves on
//! these machines ([`SERVICES`]); moto serves the rest (DynamoDB and its streams, which
//! LocalStack forwards to DynamoDB Local, a Java download that cannot be used here).
//!
//! From the project's `.venv/localstack` when `scripts/localstack install` put the pinned
//! version there, else herald's own under [`crate::moto::cache_dir`], installed on first use on
//! a Python ≥ 3.12 the machine has. Everything it writes is under the project's
//! `.herald/localstack/<port>/` (removed when it stops) and the installation's `var-lib/`
//! (packages it fetches on first use, such as its Kinesis engine, kept between starts).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::moto::{spawn_tied, Spawn};

/// The services LocalStack serves here, by their SDK service ids.
pub const SERVICES: &[&str] = &["Kinesis", "SNS", "SQS", "S3", "Firehose", "CloudFormation"];

/// The account both emulators answer for: LocalStack takes it from a 12-digit access key id,
/// moto's is this one whatever the key. One account, as on AWS: ARNs built from one emulator's
/// answers name resources on the other.
pub const ACCOUNT_KEY_ID: &str = "123456789012";

/// The pinned requirements (the same file `scripts/localstack` installs).
const REQUIREMENTS: &str = include_str!("../../../infra/requirements-localstack.txt");

/// A running LocalStack; stopped on drop (and, on Linux, when the process that started it dies).
#[derive(Debug)]
pub struct LocalStack {
    port: u16,
    child: Child,
    state: PathBuf,
}

/// A LocalStack to start: the Python of the virtualenv it is installed in.
#[derive(Clone, Debug)]
pub struct Installation {
    /// The virtualenv's Python.
    pub python: PathBuf,
}

impl Installation {
    /// The project's (`<root>/.venv/localstack`, installed from the current requirements), else
    /// herald's own, installed now if missing (a pip install, about a minute).
    pub fn find_or_install(root: &Path) -> Result<Installation> {
        let project = root.join(".venv/localstack");
        if project.join(format!(".installed-{}", digest(16))).exists() {
            return Ok(Installation {
                python: project.join("bin/python"),
            });
        }
        let dir = crate::moto::cache_dir()?.join(format!("localstack-{}", digest(12)));
        if !dir.join("bin/python").exists() {
            crate::venv::install(
                &dir,
                &python()?,
                &[("requirements.txt", REQUIREMENTS)],
                "LocalStack (pinned) — once, about a minute",
            )?;
        }
        Ok(Installation {
            python: dir.join("bin/python"),
        })
    }

    /// Where LocalStack keeps the packages it fetches on first use, between starts.
    fn var_lib(&self) -> PathBuf {
        self.python
            .parent()
            .and_then(Path::parent)
            .map(|venv| venv.join("var-lib"))
            .unwrap_or_default()
    }
}

/// The requirements' SHA-256, as many hex digits as asked (`scripts/localstack` stamps its
/// install with the first 16).
fn digest(digits: usize) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(REQUIREMENTS.as_bytes()))[..digits].to_string()
}

/// A Python ≥ 3.12 (LocalStack's code needs it): `LOCALSTACK_PYTHON`, else the first of
/// python3.13 and python3.12 on `PATH` or under pyenv.
fn python() -> Result<String> {
    let pyenv = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|home| Path::new(&home).join(".pyenv")))
        .ok();
    let mut candidates: Vec<String> = std::env::var("LOCALSTACK_PYTHON").into_iter().collect();
    candidates.extend(["python3.13".into(), "python3.12".into()]);
    if let Some(versions) = pyenv.and_then(|p| std::fs::read_dir(p.join("versions")).ok()) {
        let mut found: Vec<PathBuf> = versions
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("3.13") || name.starts_with("3.12")
            })
            .collect();
        found.sort();
        found.reverse();
        candidates.extend(
            found
                .into_iter()
                .map(|p| p.join("bin/python3").display().to_string()),
        );
    }
    candidates
        .into_iter()
        .find(|candidate| {
            std::process::Command::new(candidate)
                .args(["-c", "import sys; sys.exit(sys.version_info < (3, 12))"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .ok_or_else(|| {
            anyhow!("LocalStack needs Python >= 3.12 (set LOCALSTACK_PYTHON); none found")
        })
}

impl LocalStack {
    /// Start LocalStack (`installation`) for the project at `root` on a free port, and wait
    /// until it answers.
    pub async fn start(installation: &Installation, root: &Path) -> Result<LocalStack> {
        let port = crate::moto::free_port()?;
        let state = root.join(".herald/localstack").join(port.to_string());
        let _ = std::fs::remove_dir_all(&state);
        for dir in ["home", "tmp", "npm", "fs/var/lib/localstack"] {
            std::fs::create_dir_all(state.join(dir))
                .with_context(|| format!("creating {}", state.join(dir).display()))?;
        }
        let var_lib = installation.var_lib();
        std::fs::create_dir_all(&var_lib)?;
        std::os::unix::fs::symlink(&var_lib, state.join("fs/var/lib/localstack/lib"))?;
        let at = |dir: &str| state.join(dir).display().to_string();
        let services = SERVICES
            .iter()
            .map(|s| s.to_lowercase())
            .chain(["sts".into(), "iam".into()])
            .collect::<Vec<_>>()
            .join(",");
        let env = [
            ("HOME", at("home")),
            ("TMPDIR", at("tmp")),
            ("npm_config_cache", at("npm")),
            ("FILESYSTEM_ROOT", at("fs")),
            // These machines have /.dockerenv: LocalStack would write to its system-wide
            // directories if it believed it ran in its container.
            ("OVERRIDE_IN_DOCKER", "0".into()),
            ("DNS_ADDRESS", "0".into()),
            ("GATEWAY_LISTEN", format!("127.0.0.1:{port}")),
            ("DISABLE_EVENTS", "1".into()),
            ("SKIP_SSL_CERT_DOWNLOAD", "1".into()),
            ("SERVICES", services),
        ];
        let child = spawn_tied(Spawn {
            program: installation.python.clone(),
            args: vec!["-m".into(), "localstack.runtime.main".into()],
            env: env.map(|(k, v)| (k.to_string(), v)).to_vec(),
            ..Spawn::default()
        })
        .with_context(|| format!("starting LocalStack ({})", installation.python.display()))?;
        let mut localstack = LocalStack { port, child, state };
        localstack.wait_ready(Duration::from_secs(60)).await?;
        Ok(localstack)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Each served service's `AWS_ENDPOINT_URL_<SERVICE>` and LocalStack's URL.
    pub fn services(&self) -> herald::aws::ServiceEndpoints {
        let mut services = herald::aws::ServiceEndpoints::default();
        for service in SERVICES {
            services.insert(herald::aws::ServiceEndpoints::variable(service), self.url());
        }
        services
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let health = format!("{}/_localstack/health", self.url());
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("LocalStack exited at start ({status})");
            }
            if matches!(
                crate::http::request("GET", &health, None, &[]).await,
                Ok((200, _))
            ) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(anyhow!(
            "LocalStack did not answer on port {} within {limit:?}",
            self.port
        ))
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        // SIGTERM first: LocalStack stops the engines it started (its Kinesis is a Node process).
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (so not reused).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
