//! Who is calling: API tokens from a file (stored as SHA-256 digests, compared in
//! constant time), their roles and tenant scopes, and the console's sessions.
//!
//! Invariants:
//! - A token's text is never stored, logged or returned after `vigil token new`
//!   printed it once; the file holds only digests.
//! - Every request resolves to one [`Principal`] or is refused (401) before any
//!   handler runs; handlers ask the principal about roles and tenants.
//! - A session cookie is HttpOnly and SameSite=Strict, and every state-changing
//!   request made with it must carry the session's CSRF token in a header.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What a token may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// a guard company's client: its published reports and a findings summary, nothing else
    Client,
    /// read findings, rules, runbooks and the stream
    Viewer,
    /// also acknowledge, resolve and silence
    Operator,
    /// also reload rules and act across tenants
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "client" => Some(Role::Client),
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its spelling in the tokens file and the API.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The tenants a token may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `*`: every tenant.
    All,
    /// These tenants only.
    Only(BTreeSet<String>),
}

impl Scope {
    /// May this scope see `tenant`?
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(tenant),
        }
    }

    /// The tenants as a store filter (`None`: every tenant).
    pub fn tenants(&self) -> Option<Vec<String>> {
        match self {
            Scope::All => None,
            Scope::Only(set) => Some(set.iter().cloned().collect()),
        }
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scope::All => s.collect_seq(["*"]),
            Scope::Only(set) => s.collect_seq(set),
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    /// The token's name (who acknowledged, resolved, silenced).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its tenants.
    pub tenants: Scope,
}

/// The tokens file, read once at start.
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

/// SHA-256 of a token's text.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Equal digests, in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `n` random bytes from the operating system, as hex.
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("the operating system's random source failed: {e}"))?;
    Ok(hex(&bytes))
}

/// A new token's text: `vgl_` and 32 random bytes.
pub fn new_token() -> Result<String, String> {
    Ok(format!("vgl_{}", random_hex(32)?))
}

/// The tokens-file line for a token: `name role tenants sha256:<hex>`.
pub fn file_line(name: &str, role: &str, tenants: &str, token: &str) -> String {
    format!("{name} {role} {tenants} sha256:{}", hex(&digest(token)))
}

impl Tokens {
    /// Reads a tokens file: one token per line, `name role tenants sha256:<hex>`,
    /// tenants comma-separated or `*`; `#` starts a comment. Errors name file:line.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read the tokens file: {e}", path.display()))?;
        Tokens::parse(&text, &path.display().to_string())
    }

    /// Parses a tokens file's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Tokens, String> {
        let mut entries: Vec<([u8; 32], Principal)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let content = line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let at = |m: String| format!("{origin}:{line_no}: {m}");
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, role, tenants, hash] = fields[..] else {
                return Err(at(format!(
                    "expected `name role tenants sha256:<hex>` (4 fields), found {}; `vigil token new` prints such a line",
                    fields.len()
                )));
            };
            let role = Role::parse(role).ok_or_else(|| at(format!("unknown role `{role}` (client, viewer, operator or admin)")))?;
            let tenants = if tenants == "*" {
                Scope::All
            } else {
                let set: BTreeSet<String> = tenants.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect();
                if set.is_empty() {
                    return Err(at("no tenants: give them comma-separated, or `*` for every tenant".into()));
                }
                Scope::Only(set)
            };
            let digest = hash
                .strip_prefix("sha256:")
                .and_then(unhex)
                .ok_or_else(|| at("the last field must be `sha256:` and 64 hex digits (a digest, never the token itself)".into()))?;
            if entries.iter().any(|(d, _)| same(d, &digest)) {
                return Err(at(format!("the token of `{name}` is listed twice")));
            }
            if entries.iter().any(|(_, p)| p.name == name) {
                return Err(at(format!("the name `{name}` is used twice; names say who acknowledged what")));
            }
            entries.push((digest, Principal { name: name.to_string(), role, tenants }));
        }
        if entries.is_empty() {
            return Err(format!("{origin}: no tokens; create one with `vigil token new --name NAME --role admin --tenants '*'`"));
        }
        Ok(Tokens { entries })
    }

    /// The principal of a token's text, comparing against every digest in constant time.
    pub fn check(&self, token: &str) -> Option<Principal> {
        let d = digest(token);
        let mut found = None;
        for (entry, principal) in &self.entries {
            if same(entry, &d) {
                found = Some(principal);
            }
        }
        found.cloned()
    }
}

/// How long a console session lasts without use.
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// A console session behind an HttpOnly cookie.
#[derive(Clone)]
pub struct Session {
    /// Who logged in.
    pub principal: Principal,
    /// What state-changing requests must echo in `X-CSRF-Token`.
    pub csrf: String,
    last_used: Instant,
}

/// The console's sessions (in memory: a restart logs everyone out).
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Starts a session: (cookie value, CSRF token).
    pub fn open(&self, principal: Principal) -> Result<(String, String), String> {
        let (id, csrf) = (random_hex(32)?, random_hex(32)?);
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        map.insert(digest(&id), Session { principal, csrf: csrf.clone(), last_used: Instant::now() });
        Ok((id, csrf))
    }

    /// The session of a cookie value, if it is live.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        let live = map.get(&key).is_some_and(|s| s.last_used.elapsed() < SESSION_IDLE);
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key)?;
        s.last_used = Instant::now();
        Some(s.clone())
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(id));
    }
}

/// Do two secrets match, in time that does not depend on where they differ?
pub fn same_secret(a: &str, b: &str) -> bool {
    same(&digest(a), &digest(b))
}

/// Requests per second each token may make to one endpoint (the ingest endpoint): a
/// token bucket per token name, refilled at `rate` a second, holding at most `rate`
/// (one second's worth, so a burst is at most a second's requests).
pub struct RateLimit {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// `rate` requests a second per token; 0 turns the limit off.
    pub fn new(rate: u32) -> RateLimit {
        RateLimit { rate: f64::from(rate), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `who`'s bucket, or says how long until one is there.
    pub fn take(&self, who: &str) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(who.to_string()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests a second", self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(hex(&digest("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_tokens_file_maps_tokens_to_principals() {
        let text = format!(
            "# ops centre\n{}\n{}  # night shift\n",
            file_line("ana", "operator", "T1,T2", "secret-a"),
            file_line("root", "admin", "*", "secret-r")
        );
        let tokens = Tokens::parse(&text, "tokens").expect("parses");
        let ana = tokens.check("secret-a").expect("ana");
        assert_eq!(ana.role, Role::Operator);
        assert!(ana.tenants.allows("T2") && !ana.tenants.allows("T3"));
        assert_eq!(tokens.check("secret-r").map(|p| p.tenants), Some(Scope::All));
        assert_eq!(tokens.check("secret-x"), None);
        assert_eq!(tokens.check(""), None);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let err = |t: &str| Tokens::parse(t, "tokens.txt").err().unwrap_or_default();
        assert!(err("a admin *\n").starts_with("tokens.txt:1: expected `name role tenants sha256:<hex>` (4 fields), found 3"));
        assert!(err("\na boss * sha256:00").starts_with("tokens.txt:2: unknown role `boss`"));
        assert!(err("a admin * vgl_plaintext").contains("tokens.txt:1: the last field must be `sha256:`"));
        let line = file_line("a", "admin", "*", "t");
        assert!(err(&format!("{line}\n{line}\n")).starts_with("tokens.txt:2: the token of `a` is listed twice"));
        assert!(err("# nothing\n").contains("no tokens"));
    }

    #[test]
    fn sessions_carry_a_csrf_token_and_end() {
        let sessions = Sessions::default();
        let p = Principal { name: "ana".into(), role: Role::Viewer, tenants: Scope::All };
        let (id, csrf) = sessions.open(p.clone()).expect("open");
        assert_eq!(id.len(), 64);
        let s = sessions.get(&id).expect("live");
        assert_eq!((s.principal, s.csrf), (p, csrf));
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }
}
