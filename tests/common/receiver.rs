//! A webhook receiver on loopback for the runbook-action tests: it verifies every
//! request's Standard Webhooks signature with its own HMAC (independent of the
//! service's), records what arrived, applies each `webhook-id` once (as a real
//! receiver deduplicates), and answers as scripted: 200, any status (with a
//! Retry-After), or a response held back for a while.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// The receivers' signing secrets (in files beside the actions configuration).
pub const NEW_SECRET: &str = "new-secret-0123456789";
/// The secret being rotated out.
pub const OLD_SECRET: &str = "old-secret-9876543210";

/// A library whose runbooks have no `auto` lines but `autos` (runbook file -> lines),
/// an actions file, and the two signing secrets in files.
pub fn library_with_actions(label: &str, autos: &[(&str, &str)], actions: &str) -> PathBuf {
    let dir = super::library(label);
    for entry in std::fs::read_dir(dir.join("runbooks")).expect("runbooks") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let mut kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("auto ")).collect();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        for (file, lines) in autos {
            if name == *file {
                let close = kept.iter().rposition(|l| l.trim() == "}").expect("a closing brace");
                kept.insert(close, lines);
            }
        }
        std::fs::write(&path, kept.join("\n") + "\n").expect("write");
    }
    std::fs::write(dir.join("new.secret"), NEW_SECRET).expect("secret");
    std::fs::write(dir.join("old.secret"), OLD_SECRET).expect("secret");
    std::fs::write(dir.join("actions.toml"), actions).expect("actions");
    dir
}

/// A channel or endpoint section at the receiver, allowed on loopback, signed with both secrets.
pub fn endpoint(kind: &str, name: &str, r: &Receiver) -> String {
    format!(
        "[{kind}.{name}]\nurl = \"{}\"\nsecret = [\"file:new.secret\", \"file:old.secret\"]\ntimeout = \"2s\"\nallow_private = true\n\n",
        r.url
    )
}

/// What to answer to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// 200 at once.
    Ok,
    /// This status, with `Retry-After: N` seconds when given.
    Status(u16, Option<u64>),
    /// Hold the connection this long, then 200 (the request is applied on arrival).
    Hang(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Got {
    /// `webhook-id`
    pub id: String,
    /// The body.
    pub body: String,
    /// Every signature in `webhook-signature` matched one of the secrets, and each
    /// secret signed it.
    pub verified: bool,
    /// When it arrived.
    pub at: Instant,
    /// What it was answered.
    pub reply: Reply,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    got: Vec<Got>,
    /// webhook-id -> times applied (a deduplicating receiver applies each once).
    applied: BTreeMap<String, usize>,
}

/// The receiver.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // RFC 2104, written again here so the test does not trust the service's code.
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(message.iter().copied()).collect();
    let inner = Sha256::digest(&ipad);
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner.iter().copied()).collect();
    Sha256::digest(&opad).to_vec()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= c.len() { A[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

impl Receiver {
    /// Listens on a free loopback port; `secrets` are the raw keys it accepts.
    pub fn start(secrets: &[&str]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let keys: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        let shared = Arc::clone(&inner);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (shared, keys) = (Arc::clone(&shared), keys.clone());
                std::thread::spawn(move || serve(stream, &shared, &keys));
            }
        });
        Receiver { url, inner }
    }

    /// Answers these, in order, before the default.
    pub fn script(&self, replies: &[Reply]) {
        self.inner.lock().expect("lock").script.extend(replies.iter().copied());
    }

    /// Answers this once the script is used up (200 unless set).
    pub fn default(&self, r: Reply) {
        self.inner.lock().expect("lock").default = Some(r);
    }

    /// Every request so far.
    pub fn got(&self) -> Vec<Got> {
        self.inner.lock().expect("lock").got.clone()
    }

    /// webhook-id -> how many times it arrived.
    pub fn arrivals(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for g in self.got() {
            *m.entry(g.id).or_insert(0) += 1;
        }
        m
    }

    /// The ids applied (each at most once: the receiver deduplicates by webhook-id).
    pub fn effects(&self) -> BTreeMap<String, usize> {
        self.inner.lock().expect("lock").applied.clone()
    }
}

fn serve(stream: TcpStream, shared: &Mutex<Inner>, keys: &[Vec<u8>]) {
    let mut reader = BufReader::new(stream);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let ts = headers.get("webhook-timestamp").cloned().unwrap_or_default();
    let message = format!("{id}.{ts}.{body}");
    let expected: Vec<String> = keys.iter().map(|k| format!("v1,{}", b64(&hmac(k, message.as_bytes())))).collect();
    let sent: Vec<String> = headers.get("webhook-signature").map(|s| s.split(' ').map(str::to_string).collect()).unwrap_or_default();
    let verified = !expected.is_empty() && sent.len() == expected.len() && expected.iter().all(|e| sent.contains(e));
    let reply = {
        let mut inner = shared.lock().expect("lock");
        let reply = inner.script.pop_front().or(inner.default).unwrap_or(Reply::Ok);
        inner.got.push(Got { id: id.clone(), body, verified, at: Instant::now(), reply });
        if matches!(reply, Reply::Ok | Reply::Hang(_)) {
            // Applied on its first arrival only: a repeat of an id changes nothing.
            inner.applied.entry(id).or_insert(1);
        }
        reply
    };
    let (status, extra) = match reply {
        Reply::Ok => (200, String::new()),
        Reply::Status(code, ra) => (code, ra.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default()),
        Reply::Hang(d) => {
            std::thread::sleep(d);
            (200, String::new())
        }
    };
    let mut stream = reader.into_inner();
    let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n{extra}\r\nok");
    let _ = stream.flush();
}
