//! A real `vigil serve` on a loopback port, with tokens, for the API, live-feed and
//! browser tests; and a blocking Server-Sent Events reader.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The tokens every test server knows: (name, role, tenants).
pub const TOKENS: [(&str, &str, &str); 6] = [
    ("ana", "operator", "T000"),
    ("tom", "operator", "T900"),
    ("val", "viewer", "T000"),
    ("mia", "admin", "T000,T900"),
    ("root", "admin", "*"),
    ("cleo", "client", "T000"),
];

/// The demo fixture plus a twin tenant `T900`: every row of T000 again under T900,
/// so site, guard, shift and task ids collide across the two tenants on purpose.
pub fn twins(label: &str) -> PathBuf {
    let dir = super::temp_dir(label);
    for entry in std::fs::read_dir(super::root().join("fixtures/demo")).expect("demo") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let mut out = text.clone();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        for line in text.lines().filter(|l| l.starts_with("T000,")) {
            out.push_str("T900,");
            out.push_str(&line["T000,".len()..]);
            out.push('\n');
        }
        std::fs::write(dir.join(path.file_name().expect("name")), out).expect("write");
    }
    dir
}

/// A running `vigil serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Token text by name.
    pub tokens: HashMap<&'static str, String>,
    /// The directory it runs in (rules, runbooks, state, tokens).
    pub dir: PathBuf,
    err: Receiver<String>,
    /// Every stderr line seen so far.
    pub seen: Vec<String>,
}

impl Server {
    /// Starts `vigil serve` in `dir` (which holds `rules/` and `runbooks/`) over
    /// `signals`, on a virtual clock from 2025-10-04T10:00:00Z, 5-minute ticks.
    pub fn start(dir: &Path, signals: &Path, extra: &[&str]) -> Server {
        Server::start_with(dir, Some(signals), extra)
    }

    /// As [`Server::start`], with signal files or only pushed signals.
    pub fn start_with(dir: &Path, signals: Option<&Path>, extra: &[&str]) -> Server {
        let tokens_file = dir.join("tokens.txt");
        let mut tokens = HashMap::new();
        if !tokens_file.exists() {
            for (name, role, tenants) in TOKENS {
                let (code, out, err) =
                    super::vigil(&["token", "new", "--name", name, "--role", role, "--tenants", tenants, "--append", "tokens.txt"], dir);
                assert_eq!(code, 0, "{err}");
                tokens.insert(name, out.trim().to_string());
            }
            std::fs::write(dir.join("tokens.json"), serde_json::to_string(&tokens).expect("json")).expect("write");
        } else {
            let text = std::fs::read_to_string(dir.join("tokens.json")).expect("tokens.json");
            let map: HashMap<String, String> = serde_json::from_str(&text).expect("json");
            for (name, _, _) in TOKENS {
                tokens.insert(name, map[name].clone());
            }
        }
        let mut args: Vec<String> = [
            "serve",
            "--state",
            "state.duckdb",
            "--tokens",
            "tokens.txt",
            "--listen",
            "127.0.0.1:0",
            "--start",
            "2025-10-04T10:00:00Z",
            "--every",
            "5m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(signals) = signals {
            args.extend(["--signals".to_string(), signals.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let (tx, err) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server { child, base: String::new(), tokens, dir: dir.to_path_buf(), err, seen: Vec::new() };
        let line = server.wait_for("listening on http://");
        let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("address").to_string();
        server.base = format!("http://{addr}");
        server
    }

    /// Waits for a stderr line containing `needle` (60 s); returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_within(needle, Duration::from_secs(60))
    }

    /// Waits for a stderr line containing `needle` for at most `limit`; returns it.
    pub fn wait_for_within(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(line) = self.err.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited ({status}) before {needle:?}; saw:\n{}", self.seen.join("\n"));
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"));
    }

    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request as `who` (a name from [`TOKENS`]).
    pub fn as_(&self, who: &str, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        client().request(method, self.url(path)).bearer_auth(&self.tokens[who])
    }

    /// GET as `who`: (status, JSON body).
    pub fn get(&self, who: &str, path: &str) -> (u16, serde_json::Value) {
        answer(self.as_(who, reqwest::Method::GET, path))
    }

    /// POST JSON as `who`: (status, JSON body).
    pub fn post(&self, who: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        answer(self.as_(who, reqwest::Method::POST, path).json(&body))
    }

    /// The live feed as `who`, from `last_event_id` when given.
    pub fn events(&self, who: &str, last_event_id: Option<u64>) -> Feed {
        let mut req = sse_client().get(self.url("/api/v1/events")).bearer_auth(&self.tokens[who]);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        Feed::open(req)
    }

    /// SIGTERM, then the exit status (10 s at most).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.err.try_recv() {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no drain.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with a 30 s timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client")
}

fn sse_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(None).build().expect("client")
}

/// (status, JSON body or `null`).
pub fn answer(req: reqwest::blocking::RequestBuilder) -> (u16, serde_json::Value) {
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    /// `id:`
    pub id: u64,
    /// `event:`
    pub kind: String,
    /// `data:` parsed as JSON.
    pub data: serde_json::Value,
    /// When the reader received it.
    pub at: Instant,
}

/// A live-feed connection read on its own thread.
pub struct Feed {
    rx: Receiver<Sse>,
    /// The HTTP status of the stream's response.
    pub status: u16,
    /// Comment lines (heartbeats) seen.
    pub comments: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Feed {
    fn open(req: reqwest::blocking::RequestBuilder) -> Feed {
        let response = req.send().expect("events");
        let status = response.status().as_u16();
        let (tx, rx) = mpsc::channel();
        let comments = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&comments);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(response);
            let (mut id, mut kind, mut data) = (0u64, String::new(), String::new());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let l = line.trim_end_matches(['\n', '\r']).to_string();
                line.clear();
                if l.is_empty() {
                    if !kind.is_empty() || !data.is_empty() {
                        let parsed = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                        if tx.send(Sse { id, kind: std::mem::take(&mut kind), data: parsed, at: Instant::now() }).is_err() {
                            return;
                        }
                        data.clear();
                    }
                } else if l.starts_with(':') {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                } else if let Some(v) = l.strip_prefix("id:") {
                    id = v.trim().parse().unwrap_or(0);
                } else if let Some(v) = l.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = l.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        });
        Feed { rx, status, comments }
    }

    /// The next event within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Sse> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Events until one matches `pred` (30 s); returns all of them, the match last.
    pub fn until(&self, pred: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            if let Some(e) = self.next(Duration::from_millis(100)) {
                let done = pred(&e);
                got.push(e);
                if done {
                    return got;
                }
            }
        }
        panic!("no matching event within 30 s; got {:?}", got.iter().map(|e| (e.id, e.kind.clone())).collect::<Vec<_>>());
    }

    /// Every event that arrives within `wait`.
    pub fn drain(&self, wait: Duration) -> Vec<Sse> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(e) => got.push(e),
                None => break,
            }
        }
        got
    }
}
