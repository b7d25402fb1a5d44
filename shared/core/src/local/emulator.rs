//! Starts moto's server (the local AWS emulator) for the CLI and the tests.
//!
//! The emulator is installed by `scripts/emulator install` into the project's `.venv`.
//! It runs under a small shell watchdog that stops it when the process that started it
//! exits, so a test binary that keeps its emulator in a `static` leaks nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::aws::Env;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "cannot find the Apiary project (scripts/emulator); run from the repository or set APIARY_ROOT"
    )]
    NoProject,
    #[error("installing the emulator failed: {0}")]
    Install(String),
    #[error("starting the emulator failed: {0}")]
    Start(String),
    #[error("the emulator did not answer on {endpoint} within {seconds} s; its log is {log}")]
    NotHealthy {
        endpoint: String,
        seconds: u64,
        log: String,
    },
}

/// A running emulator: one we started (stopped on drop) or one given by the environment.
#[derive(Debug)]
pub struct Emulator {
    endpoint: String,
    watchdog: Option<Child>,
}

/// The repository root: `APIARY_ROOT`, else the nearest ancestor of the working directory
/// holding `scripts/emulator`, else where this crate was built from.
pub fn project_root(env: &dyn Env) -> Option<PathBuf> {
    let has_script = |dir: &Path| dir.join("scripts/emulator").is_file();
    if let Some(root) = env.var("APIARY_ROOT").map(PathBuf::from) {
        return has_script(&root).then_some(root);
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(found) = cwd.ancestors().find(|d| has_script(d))
    {
        return Some(found.to_path_buf());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    has_script(&built_from).then_some(built_from)
}

impl Emulator {
    /// The emulator named by `AWS_ENDPOINT_URL`, or a new one on a free loopback port.
    pub fn from_env_or_start(env: &dyn Env) -> Result<Emulator, EmulatorError> {
        if let Some(endpoint) = env.var("AWS_ENDPOINT_URL") {
            return Ok(Emulator {
                endpoint,
                watchdog: None,
            });
        }
        let root = project_root(env).ok_or(EmulatorError::NoProject)?;
        Emulator::start(&root)
    }

    /// Installs (if needed) and starts a new emulator.
    pub fn start(root: &Path) -> Result<Emulator, EmulatorError> {
        let status = Command::new("bash")
            .arg(root.join("scripts/emulator"))
            .arg("install")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| EmulatorError::Install(e.to_string()))?;
        if !status.success() {
            return Err(EmulatorError::Install(format!(
                "scripts/emulator install exited with {status}"
            )));
        }
        let server = root.join(".venv/bin/moto_server");
        let port = free_port().map_err(|e| EmulatorError::Start(e.to_string()))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let log_dir = root.join(".apiary/emulator");
        std::fs::create_dir_all(&log_dir).map_err(|e| EmulatorError::Start(e.to_string()))?;
        let log = log_dir.join(format!("moto-{port}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| EmulatorError::Start(e.to_string()))?;
        // The watchdog stops the server when we exit, however we exit.
        let script = r#"
            "$0" -H 127.0.0.1 -p "$1" & server=$!
            trap 'kill $server 2>/dev/null; exit 0' TERM INT HUP EXIT
            while kill -0 "$2" 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done
        "#;
        let watchdog = Command::new("sh")
            // AWS managed IAM policies (AmazonEKSClusterPolicy, ...) exist only when loaded.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            // moto issues a DNS-validated certificate, without looking at DNS, once it is
            // older than this (60 s by default); the local engine runs every poll at once.
            .env("MOTO_ACM_VALIDATION_WAIT", "0")
            .arg("-c")
            .arg(script)
            .arg(&server)
            .arg(port.to_string())
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|e| EmulatorError::Start(e.to_string()))?,
            )
            .stderr(log_file)
            .spawn()
            .map_err(|e| EmulatorError::Start(format!("{}: {e}", server.display())))?;
        let emulator = Emulator {
            endpoint,
            watchdog: Some(watchdog),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if healthy(port) {
                return Ok(emulator);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(EmulatorError::NotHealthy {
            endpoint: emulator.endpoint.clone(),
            seconds: 30,
            log: log.display().to_string(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// True when this process started the emulator (and will stop it).
    pub fn is_owned(&self) -> bool {
        self.watchdog.is_some()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // SIGTERM lets the watchdog's trap stop the server too.
            let _ = Command::new("kill").arg(watchdog.id().to_string()).status();
            let _ = watchdog.wait();
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
