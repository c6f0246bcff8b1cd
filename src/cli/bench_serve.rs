//! `vigil bench-serve`: the service under load. A synthetic fleet streams its
//! signals into a real `vigil serve` (a child process on a loopback port) over
//! HTTP at a set rate while live-feed clients listen; reports ingest latency,
//! tick durations, finding-to-client latency after commit and peak memory.
//!
//! The client side is a few lines of HTTP/1.0 over `TcpStream` (one request per
//! connection; an HTTP/1.0 response body runs to the end of the connection, so
//! the live feed needs no chunked decoding).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use vigil_engine::schema;

/// What to run.
pub(super) struct BenchServe {
    pub sites: u32,
    pub rate: u32,
    pub minutes: u32,
    pub clients: u32,
    pub batch: usize,
}

pub(super) fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    let mut head =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn millis(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(v, 0.5) * 1e3,
        percentile(v, 0.99) * 1e3,
        v.last().copied().unwrap_or(f64::NAN) * 1e3,
        v.len()
    )
}

/// Rows of one table as CSV lines (header first), split at `cut` by event time.
pub(super) struct TableRows {
    pub header: String,
    pub before: Vec<String>,
    pub stream: Vec<(i64, String)>,
}

pub(super) fn read_table(dir: &Path, table: &schema::Table, cut: i64) -> Result<TableRows, CliError> {
    let path = dir.join(format!("{}.csv", table.name));
    let text = std::fs::read_to_string(&path).map_err(|e| input_err(format!("{}: {e}", path.display())))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let at = table.event_time.and_then(|ev| header.split(',').position(|h| h == ev));
    let mut out = TableRows { header, before: Vec::new(), stream: Vec::new() };
    for line in lines {
        // The generator's CSV has no quoted fields: a plain split finds the event time.
        let time = at.and_then(|i| line.split(',').nth(i)).and_then(|t| load::parse_timestamp(t).ok());
        match time {
            Some(t) if t > cut => out.stream.push((t, line.to_string())),
            _ => out.before.push(line.to_string()),
        }
    }
    Ok(out)
}

pub(super) fn bench_serve(args: &RuleArgs, b: &BenchServe) -> CliResult {
    let dir = std::env::temp_dir().join(format!("vigil-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fleet = dir.join("fleet");
    let hours = 2 + b.minutes.div_ceil(60);
    let spec = FleetSpec { sites: b.sites, hours, seed: 11, start: parse_time("2025-10-04T08:00:00Z", "start")?, incident_percent: 10 };
    generate::write_fleet(&spec, &fleet, FileFormat::Csv).map_err(input_err)?;
    let end = spec.end();
    let cut = end - i64::from(b.minutes) * 60_000_000;

    // History up to the cut goes straight into the signals database; the rest streams.
    let ingest_db = dir.join("state.signals.duckdb");
    let mut streams: Vec<(i64, &'static str, String)> = Vec::new();
    let mut headers: HashMap<&'static str, String> = HashMap::new();
    let mut history = 0usize;
    for table in schema::contract_tables().filter(|t| !t.derived) {
        let rows = read_table(&fleet, table, cut)?;
        if !rows.before.is_empty() {
            let text = format!("{}\n{}\n", rows.header, rows.before.join("\n"));
            let parsed = load::parse_batch(table, load::BatchFormat::Csv, &text, Path::new(table.name)).map_err(input_err)?;
            history += parsed.len();
            vigil_engine::ingest::store_batch(&ingest_db, table, parsed, None, None).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        }
        streams.extend(rows.stream.into_iter().map(|(t, l)| (t, table.name, l)));
        headers.insert(table.name, rows.header);
    }
    streams.sort_by_key(|(t, _, _)| *t);
    let rows = streams.len();
    let wall = Duration::from_secs_f64((rows as f64 / f64::from(b.rate.max(1))).max(5.0));
    let ticks = u64::from(b.minutes / 5).max(1);
    let tick_interval = wall / ticks as u32;

    let token = serve::new_token().map_err(input_err)?;
    std::fs::write(dir.join("tokens"), serve::file_line("bench", "admin", "*", &token) + "\n").map_err(input_err)?;
    let runbooks = args.runbooks.clone().unwrap_or_else(|| sibling(&args.rules, "runbooks"));
    let exe = std::env::current_exe().map_err(input_err)?;
    let mut child = Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--every", "5m", "--heartbeat", "5s", "--tokens"])
        .arg(dir.join("tokens"))
        .arg("--state")
        .arg(dir.join("state.duckdb"))
        .arg("--rules")
        .arg(&args.rules)
        .arg("--runbooks")
        .arg(&runbooks)
        .args(["--start", &exec::iso(cut), "--ingest-rate", "0"])
        .args(["--tick-interval", &format!("{}ms", tick_interval.as_millis())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Eval(format!("error: cannot start vigil serve: {e}")))?;
    let pid = child.id();
    let stderr = child.stderr.take().ok_or_else(|| CliError::Eval("error: no stderr".into()))?;
    let (line_tx, line_rx) = mpsc::channel::<(String, Instant)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send((line, Instant::now()));
        }
    });
    let addr = loop {
        let (line, _) = line_rx.recv_timeout(Duration::from_secs(60)).map_err(|_| CliError::Eval("error: serve did not start".into()))?;
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap_or_default().to_string();
        }
    };
    let started = Instant::now();
    outln!(
        "bench-serve: {} sites, {history} rows of history stored, {rows} rows to stream over {} min of virtual time ({} ticks of 5 min, one every {} ms), {} live-feed clients",
        b.sites,
        b.minutes,
        ticks,
        tick_interval.as_millis(),
        b.clients
    );

    // Live-feed clients: each records when it received every raised finding (id, last_seen).
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..b.clients {
        let (addr, token, received) = (addr.clone(), token.clone(), Arc::clone(&received));
        std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(&addr) else { return };
            let head = format!(
                "GET /api/v1/events HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            );
            if s.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut kind = String::new();
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    if kind == "finding.raised" {
                        let v: serde_json::Value = serde_json::from_str(d).unwrap_or_default();
                        let seen = v["last_seen"].as_str().unwrap_or_default().to_string();
                        received.lock().unwrap_or_else(|p| p.into_inner()).push((seen, Instant::now()));
                    }
                }
            }
        });
    }

    // Stream: each batch is sent when the virtual time of its last row is reached.
    let virtual_per_wall = (end - cut) as f64 / wall.as_secs_f64();
    let mut ingest_latency = Vec::new();
    let mut refused = 0;
    let mut i = 0;
    while i < streams.len() {
        // The next `batch` rows in time order, sent when the last one's time is reached, one request per table.
        let j = (i + b.batch.max(1)).min(streams.len());
        let due = Duration::from_secs_f64(((streams[j - 1].0 - cut) as f64 / virtual_per_wall).max(0.0));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let mut bodies: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
        for (_, table, line) in &streams[i..j] {
            let body = bodies.entry(table).or_insert_with(|| headers.get(table).cloned().unwrap_or_default() + "\n");
            body.push_str(line);
            body.push('\n');
        }
        for (table, body) in bodies {
            let key = format!("bench-{i}-{table}");
            let sent = Instant::now();
            let extra = [("Content-Type", "text/csv"), ("Idempotency-Key", key.as_str())];
            match request(&addr, "POST", &format!("/api/v1/signals/{table}"), &token, &extra, body.as_bytes()) {
                Ok((201, _)) => ingest_latency.push(sent.elapsed().as_secs_f64()),
                Ok((status, text)) => {
                    refused += 1;
                    eprintln!("bench-serve: batch refused ({status}): {text}");
                }
                Err(e) => return Err(CliError::Eval(format!("error: the service stopped answering: {e}"))),
            }
        }
        i = j;
    }
    let streamed_in = started.elapsed();

    // Wait for the last tick, then read the metrics and the peak memory.
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let last_tick = format!("tick {}", exec::iso(end));
    let deadline = Instant::now() + wall + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Ok((line, at)) = line_rx.recv_timeout(Duration::from_millis(200)) else { continue };
        if let Some(rest) = line.strip_prefix("tick ") {
            committed.insert(rest.split(':').take(3).collect::<Vec<_>>().join(":"), at);
            if line.starts_with(&last_tick) {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let metrics = request(&addr, "GET", "/metrics", &token, &[], b"").map(|(_, m)| m).unwrap_or_default();
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();

    outln!(
        "streamed {} rows in {:.1} s ({:.0} rows/s) in batches of up to {}; {} refused",
        rows,
        streamed_in.as_secs_f64(),
        rows as f64 / streamed_in.as_secs_f64(),
        b.batch,
        refused
    );
    outln!("ingest latency per batch: {}", millis(&mut ingest_latency));
    // Mean tick duration per cadence, from the service's own histogram.
    let series = |prefix: &str| -> Vec<(String, f64)> {
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| {
                let (labels, value) = rest.split_once("} ")?;
                Some((labels.trim_start_matches("{cadence=\"").trim_end_matches('"').to_string(), value.parse().ok()?))
            })
            .collect()
    };
    let counts = series("vigil_tick_duration_seconds_count");
    for (cadence, sum) in series("vigil_tick_duration_seconds_sum") {
        let n = counts.iter().find(|(c, _)| *c == cadence).map_or(0.0, |(_, n)| *n);
        outln!("tick duration, longest cadence due {cadence}: mean {:.2} s over {n} tick(s)", sum / n.max(1.0));
    }
    let mut latencies: Vec<f64> = received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|(seen, got)| committed.get(seen).map(|c| got.saturating_duration_since(*c).as_secs_f64()))
        .collect();
    outln!("finding-to-client after the tick committed (all clients): {}", millis(&mut latencies));
    let mut per_tick: std::collections::BTreeMap<String, Vec<f64>> = std::collections::BTreeMap::new();
    for (seen, got) in received.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if let Some(c) = committed.get(seen) {
            per_tick.entry(seen.clone()).or_default().push(got.saturating_duration_since(*c).as_secs_f64());
        }
    }
    for (tick, mut v) in per_tick {
        outln!("  tick {tick}: {} events to {} clients: {}", v.len() / b.clients.max(1) as usize, b.clients, millis(&mut v));
    }
    outln!("peak memory of vigil serve (VmHWM): {:.1} MiB", peak as f64 / 1024.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
