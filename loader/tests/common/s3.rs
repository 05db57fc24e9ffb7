//! A real S3-compatible server on loopback for the tests: moto's standalone server
//! (`pip install 'moto[server]'`; scripts/test.sh puts it in target/pyvenv). It lives as
//! long as the [`S3`] value, and at most [`LIFETIME`] in any case. Objects are also served
//! over plain HTTP with range requests at `http://127.0.0.1:PORT/BUCKET/KEY`, which is how
//! the in-process tests read them (no credentials in the environment).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a server may live, whatever the test does.
pub const LIFETIME: Duration = Duration::from_secs(600);

/// A running moto server.
#[derive(Debug)]
pub struct S3 {
    child: Child,
    pub port: u16,
    exe: PathBuf,
}

/// `moto_server`: `$UIC_MOTO_SERVER`, the test venv's, or one on PATH.
fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("UIC_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for venv in [
        root.join("target/pyvenv/bin/moto_server"),
        root.join("../target/pyvenv/bin/moto_server"),
    ] {
        if venv.is_file() {
            return Some(venv);
        }
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("moto_server"))
            .find(|f| f.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(exe: &PathBuf, port: u16) -> Child {
    // `timeout` bounds the server's life even if this test process is killed.
    Command::new("timeout")
        .arg(LIFETIME.as_secs().to_string())
        .arg(exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server")
}

impl S3 {
    /// Starts a server, or says why the test is skipped and returns None.
    pub fn start(test: &str) -> Option<S3> {
        let Some(exe) = find() else {
            eprintln!(
                "skipped {test}: no moto_server (pip install 'moto[server]'; scripts/test.sh installs it in target/pyvenv)"
            );
            return None;
        };
        let port = free_port();
        let s = S3 {
            child: spawn(&exe, port),
            port,
            exe,
        };
        s.wait_ready();
        Some(s)
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if self.request("GET", "/", &[]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not answer on port {} in 30 s", self.port);
    }

    /// Stops the server (the port stays this server's for [`S3::restart`]).
    pub fn stop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to the server and exits with it.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh server on the same port (moto keeps nothing: buckets are gone).
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.exe, self.port);
        self.wait_ready();
    }

    /// One HTTP/1.1 request; the status code.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port))?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nx-amz-acl: public-read\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )?;
        c.write_all(body)?;
        let mut resp = Vec::new();
        c.read_to_end(&mut resp)?;
        let line = String::from_utf8_lossy(&resp[..resp.len().min(64)]).into_owned();
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {line:?}")))
    }

    /// Makes a bucket.
    pub fn bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}"), &[]).unwrap();
        assert_eq!(status, 200, "create bucket {name}");
    }

    /// Stores an object (a single unsigned PUT, which moto takes).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let status = self
            .request("PUT", &format!("/{bucket}/{key}"), bytes)
            .unwrap();
        assert_eq!(status, 200, "put {bucket}/{key}");
    }

    /// The object's plain-HTTP URL.
    pub fn http_url(&self, bucket: &str, key: &str) -> String {
        format!("http://127.0.0.1:{}/{bucket}/{key}", self.port)
    }

    /// The environment a `uic` process needs to reach the server as S3.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}
