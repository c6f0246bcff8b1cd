//! Resource bounds: how much memory every database the engine opens may use, where it
//! spills what does not fit, and how long one rule may run.
//!
//! Invariant: the bounds are set once, at start (`vigil --memory-limit ... --temp-dir ...
//! --rule-budget ...`), before any database is opened; every connection of
//! [`crate::load::open_database`] carries them, and every statement of
//! [`crate::exec`] runs under the budget.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// The bounds every database and rule of this process runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// DuckDB's memory limit per database, in bytes (`None`: DuckDB's own default, 80 % of RAM).
    pub memory_bytes: Option<u64>,
    /// Where databases spill what does not fit in memory: each database gets its own
    /// directory `vigil-spill-<pid>-<n>` in it, removed when the database closes.
    /// `None`: no spilling (an operation that does not fit fails).
    pub temp_dir: Option<PathBuf>,
    /// How long one rule's statement may run for one tick (a statement over n ticks
    /// gets n times it) before it is interrupted and reported as failed.
    pub rule_budget: Duration,
}

/// The default budget of one rule at one tick.
pub const DEFAULT_RULE_BUDGET: Duration = Duration::from_secs(60);

impl Default for Limits {
    /// Half the machine's memory, spilling to the system's temp directory, a minute per rule.
    fn default() -> Self {
        Limits { memory_bytes: physical_memory().map(|b| b / 2), temp_dir: Some(std::env::temp_dir()), rule_budget: DEFAULT_RULE_BUDGET }
    }
}

static LIMITS: RwLock<Option<Limits>> = RwLock::new(None);
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

/// Sets the bounds for the rest of the process: creates the spill directory's parent
/// (an error names it when it cannot be made) and removes spill directories left behind
/// by processes that no longer run (killed before their databases closed).
pub fn set(limits: Limits) -> Result<(), String> {
    if let Some(dir) = &limits.temp_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the spill directory {}: {e}", dir.display()))?;
        sweep_stale_spill_dirs(dir);
    }
    if let Ok(mut slot) = LIMITS.write() {
        *slot = Some(limits);
    }
    Ok(())
}

/// The bounds in force ([`Limits::default`] until [`set`]).
pub fn get() -> Limits {
    LIMITS.read().ok().and_then(|l| l.clone()).unwrap_or_default()
}

/// The machine's memory in bytes, from /proc/meminfo (Linux); `None` elsewhere.
pub fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses a memory size: `512MB`, `4GiB`, `1.5GB`, a plain number of bytes, or a share of
/// the machine's memory (`50%`). Units are binary (KB = KiB = 1024 bytes), as DuckDB reads them.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a memory size (e.g. 512MB, 4GB, 50%)");
    if let Some(share) = t.strip_suffix('%') {
        let p: f64 = share.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!("`{text}`: a share of memory is between 0% and 100%"));
        }
        let total = physical_memory().ok_or_else(|| format!("`{text}`: this machine's memory size is unknown; give a size"))?;
        return Ok((total as f64 * p / 100.0) as u64);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n * scale as f64;
    if !bytes.is_finite() || bytes < (16u64 << 20) as f64 {
        return Err(format!("`{text}`: a memory limit below 16MB leaves DuckDB unable to run"));
    }
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The DuckDB settings of a new database under [`get`]'s bounds: (name, value) pairs
/// for `Config::with`, which takes them as values, never as SQL text.
pub(crate) fn database_settings() -> Vec<(&'static str, String)> {
    let limits = get();
    let mut out = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        out.push(("memory_limit", format!("{}MiB", (bytes >> 20).max(16))));
    }
    match &limits.temp_dir {
        Some(dir) => {
            let n = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
            let mine = dir.join(format!("vigil-spill-{}-{n}", std::process::id()));
            out.push(("temp_directory", mine.to_string_lossy().into_owned()));
        }
        // No directory: an operation that does not fit fails instead of spilling.
        None => out.push(("temp_directory", String::new())),
    }
    out
}

/// Removes `vigil-spill-<pid>-<n>` directories in `dir` whose process is gone.
fn sweep_stale_spill_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("vigil-spill-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() && Path::new("/proc/self").exists() {
            // Best effort: a directory that cannot be removed is left for the next start.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `work` while a watchdog interrupts `conn`'s running statement once `budget` has
/// passed. Returns the work's result and whether the watchdog fired (then the result is
/// DuckDB's "interrupted" error, unless the statement had just finished).
pub fn within_budget<T>(conn: &duckdb::Connection, budget: Duration, work: impl FnOnce() -> T) -> (T, bool) {
    let handle = conn.interrupt_handle();
    within_budget_with(move || handle.interrupt(), budget, work)
}

/// [`within_budget`] with any way of stopping the work (a remote backend's interrupt).
pub fn within_budget_with<T>(interrupt: impl Fn() + Sync, budget: Duration, work: impl FnOnce() -> T) -> (T, bool) {
    let fired = AtomicBool::new(false);
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let out = std::thread::scope(|scope| {
        let fired = &fired;
        let interrupt = &interrupt;
        scope.spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(budget) {
                fired.store(true, Ordering::SeqCst);
                interrupt();
            }
        });
        let out = work();
        drop(done);
        out
    });
    (out, fired.load(Ordering::SeqCst))
}

/// The budget of a statement over `ticks` ticks.
pub fn budget_for(ticks: usize) -> Duration {
    get().rule_budget.saturating_mul(u32::try_from(ticks.max(1)).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("67108864"), Ok(64 << 20));
        assert!(parse_size("1MB").is_err_and(|e| e.contains("below 16MB")));
        assert!(parse_size("lots").is_err_and(|e| e.contains("not a memory size")));
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("0%").is_err());
        assert!(parse_size("150%").is_err());
    }
}
