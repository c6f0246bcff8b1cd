//! `vigil bench-soak`: days of simulated operation of `vigil serve` on a virtual clock.
//!
//! A synthetic fleet streams its rows into a real `vigil serve` (a child process on a
//! loopback port) as the virtual clock advances; every simulated hour the rules are
//! reloaded (every other reload broken on purpose, and one that changes a parameter);
//! an operator keeps up: each hour it acknowledges every new finding and resolves every
//! acknowledged one that cleared (a thousand of each at most); live-feed
//! clients connect and leave; once a simulated day the service is killed with SIGKILL and
//! started again. It samples the service's resident memory and the sizes of its databases
//! at every tick and checks at the end:
//! - every tick from the first to the last was written once (none lost to a kill);
//! - no finding identity has two open rows (nothing duplicated by a restart);
//! - every acknowledgement and resolution the operator got a 200 for is in the store
//!   once (or its finding left by the state's retention, resolved);
//! - the findings holding at the last tick are exactly what a cold `audit` of the rows
//!   the service kept finds at that time (nothing lost).
//!
//! It writes the samples (`soak.csv`) and a plot of them (`soak.svg`) to `--out`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::bench_serve::{read_table, request};
use super::*;
use vigil_engine::schema;
use vigil_engine::store;

/// What to run.
pub(super) struct BenchSoak {
    pub sites: u32,
    pub days: u32,
    pub every: String,
    pub tick_interval: String,
    pub clients: u32,
    pub retention: String,
    pub keep_resolved: String,
    pub out: PathBuf,
}

/// One sample: virtual time, resident memory and database sizes.
struct Sample {
    at: i64,
    rss_kib: u64,
    state_bytes: u64,
    signals_bytes: u64,
    open: usize,
}

/// The service as a child process and its stderr lines.
struct Service {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

fn fail(message: impl std::fmt::Display) -> CliError {
    CliError::Eval(format!("bench-soak: {message}"))
}

fn file_size(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}.wal", path.display()));
    [path, wal.as_path()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn start_service(args: &[String], log: &Path) -> Result<Service, CliError> {
    let exe = std::env::current_exe().map_err(fail)?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start serve: {e}")))?;
    let stderr = child.stderr.take().ok_or_else(|| fail("no stderr"))?;
    let (tx, lines) = mpsc::channel();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(fail)?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = lines.recv_timeout(Duration::from_secs(120)).map_err(|_| fail("serve did not start"))?;
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap_or_default().to_string();
        }
    };
    Ok(Service { child, addr, lines })
}

/// Sends a request, retrying while the service is restarting.
fn call(addr: &str, method: &str, path: &str, token: &str, extra: &[(&str, &str)], body: &[u8]) -> Result<(u16, String), CliError> {
    let mut last = None;
    for _ in 0..100 {
        match request(addr, method, path, token, extra, body) {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Err(fail(format!("{method} {path}: the service stopped answering ({})", last.map(|e| e.to_string()).unwrap_or_default())))
}

/// `POST /api/v1/findings/{step}` for `ids` with one note; each id that took the step is
/// recorded in `acked` as `status`. A 409 (a tick or an earlier step changed it
/// meanwhile) is left for the next round; any other refusal fails the run.
fn bulk_step(
    a: &str,
    token: &str,
    step: &str,
    ids: &[i64],
    acked: &mut HashMap<i64, &'static str>,
    status: &'static str,
) -> Result<(), CliError> {
    if ids.is_empty() {
        return Ok(());
    }
    let body = serde_json::json!({ "ids": ids, "note": "soak" }).to_string();
    let json = [("Content-Type", "application/json")];
    let (code, text) = call(a, "POST", &format!("/api/v1/findings/{step}"), token, &json, body.as_bytes())?;
    if code != 200 {
        return Err(fail(format!("bulk {step}: {code} {text}")));
    }
    let answer: serde_json::Value = serde_json::from_str(&text).map_err(fail)?;
    for r in answer["results"].as_array().into_iter().flatten() {
        match (r["id"].as_i64(), r["ok"].as_bool(), r["status"].as_u64()) {
            (Some(id), Some(true), _) => {
                acked.insert(id, status);
            }
            (_, _, Some(409)) => {}
            _ => return Err(fail(format!("bulk {step}: {r}"))),
        }
    }
    Ok(())
}

/// The oldest thousand findings of a status (`new` or `acknowledged`): what an operator's
/// round looks at (paging through every open finding each hour made the driver fall hours
/// behind the service).
fn findings_with(addr: &str, token: &str, status: &str) -> Result<Vec<serde_json::Value>, CliError> {
    let (code, body) = call(addr, "GET", &format!("/api/v1/findings?status={status}&limit=1000&sort=oldest"), token, &[], b"")?;
    if code != 200 {
        return Err(fail(format!("listing {status} findings: {code} {body}")));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(fail)?;
    Ok(v["findings"].as_array().cloned().unwrap_or_default())
}

/// How many findings are open, from the service's metrics (summed over severities).
fn open_count(addr: &str, token: &str) -> Result<usize, CliError> {
    let (code, body) = call(addr, "GET", "/metrics", token, &[], b"")?;
    if code != 200 {
        return Err(fail(format!("metrics: {code} {body}")));
    }
    Ok(body
        .lines()
        .filter(|l| l.starts_with("vigil_findings_open{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<usize>().ok()))
        .sum())
}

pub(super) fn bench_soak(rules: &RuleArgs, b: &BenchSoak) -> CliResult {
    let every = positive_micros(&b.every, "--every")?;
    let day = 86_400_000_000i64;
    let out = &b.out;
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(fail)?;
    // A day of history before the clock starts, then `days` of streamed time.
    let start = parse_time("2025-10-01T00:00:00Z", "start")?;
    let spec = FleetSpec { sites: b.sites, hours: 24 * (b.days + 1), seed: 7, start, incident_percent: 10 };
    let fleet = out.join("fleet");
    generate::write_fleet(&spec, &fleet, FileFormat::Csv).map_err(input_err)?;
    let cut = start + day;
    let end = cut + i64::from(b.days) * day;

    let state = out.join("state.duckdb");
    let ingest_db = state.with_extension("signals.duckdb");
    let mut streams: Vec<(i64, &'static str, String)> = Vec::new();
    let mut headers: HashMap<&'static str, String> = HashMap::new();
    // Rows are pushed four ticks ahead of the clock (a tick reads only rows up to its time),
    // so a tick that starts before the driver has caught up still has its rows.
    let ahead = 4 * every;
    for table in schema::contract_tables().filter(|t| !t.derived) {
        let rows = read_table(&fleet, table, cut + ahead)?;
        if !rows.before.is_empty() {
            let text = format!("{}\n{}\n", rows.header, rows.before.join("\n"));
            let parsed = load::parse_batch(table, load::BatchFormat::Csv, &text, Path::new(table.name)).map_err(input_err)?;
            vigil_engine::ingest::store_batch(&ingest_db, table, parsed, None, None).map_err(fail)?;
        }
        streams.extend(rows.stream.into_iter().map(|(t, l)| (t, table.name, l)));
        headers.insert(table.name, rows.header);
    }
    streams.sort_by_key(|(t, _, _)| *t);
    let total_rows = streams.len();

    // The rules it reloads: a copy of the given ones.
    let (rules_dir, runbooks_dir) = (out.join("rules"), out.join("runbooks"));
    let runbooks = rules.runbooks.clone().unwrap_or_else(|| sibling(&rules.rules, "runbooks"));
    for (from, to) in [(&rules.rules, &rules_dir), (&runbooks, &runbooks_dir)] {
        std::fs::create_dir_all(to).map_err(fail)?;
        for f in ruleset::vigil_files(from).map_err(fail)? {
            std::fs::copy(&f, to.join(f.file_name().unwrap_or_default())).map_err(fail)?;
        }
    }
    let token = serve::new_token().map_err(input_err)?;
    std::fs::write(out.join("tokens"), serve::file_line("soak", "admin", "*", &token) + "\n").map_err(fail)?;
    let serve_args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--every",
        &b.every,
        "--heartbeat",
        "2s",
        "--ingest-rate",
        "0",
        "--start",
        &exec::iso(cut),
        "--until",
        &exec::iso(end),
        "--tick-interval",
        &b.tick_interval,
        "--retention",
        &b.retention,
        "--keep-resolved",
        &b.keep_resolved,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--tokens".into(), out.join("tokens").display().to_string(), "--state".into(), state.display().to_string()])
    .chain(["--rules".into(), rules_dir.display().to_string(), "--runbooks".into(), runbooks_dir.display().to_string()])
    .collect();
    let mut service = start_service(&serve_args, &out.join("serve.log"))?;
    let addr = Arc::new(std::sync::RwLock::new(service.addr.clone()));
    outln!(
        "bench-soak: {} sites, {} days of virtual time from {} (a tick every {}), {total_rows} rows to stream, {} live-feed clients",
        b.sites,
        b.days,
        exec::iso(cut),
        b.every,
        b.clients
    );

    // Live-feed clients connect, listen for a while, leave and come back.
    let stop = Arc::new(AtomicBool::new(false));
    let (connections, events) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut client_threads = Vec::new();
    for c in 0..b.clients {
        let (stop, connections, events, addr, token) = (stop.clone(), connections.clone(), events.clone(), addr.clone(), token.clone());
        client_threads.push(std::thread::spawn(move || {
            let mut n = u64::from(c) + 1;
            while !stop.load(Ordering::SeqCst) {
                let a = addr.read().map(|a| a.clone()).unwrap_or_default();
                let Ok(mut s) = TcpStream::connect(&a) else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let stay = Duration::from_millis(1000 + (n >> 33) % 15_000);
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let head = format!(
                    "GET /api/v1/events HTTP/1.0\r\nHost: {a}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                let left = Instant::now() + stay;
                let mut reader = BufReader::new(s);
                let mut line = String::new();
                while Instant::now() < left && !stop.load(Ordering::SeqCst) {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) if line.starts_with("event: ") => {
                            events.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut csv = std::fs::File::create(out.join("soak.csv")).map_err(fail)?;
    writeln!(csv, "virtual_time,rss_mib,state_mib,signals_mib,open_findings").map_err(fail)?;
    let mut pushed = 0usize;
    let mut refused = 0usize;
    let mut next_row = 0usize;
    let mut acked: HashMap<i64, &'static str> = HashMap::new();
    let mut reloads = (0usize, 0usize, 0usize);
    let mut kills = 0u32;
    let mut last_tick = cut - every;
    let mut next_hour = cut + 3_600_000_000;
    let mut next_kill = cut + day;
    let broken = rules_dir.join("zz_soak_broken.vigil");
    let changed_rule = rules_dir.join("panic_raised.vigil");
    let original_rule = std::fs::read_to_string(&changed_rule).map_err(fail)?;
    let mut hour = 0u64;
    let mut finished = false;
    let mut tick_failures = 0usize;
    let mut caught_up = 0usize;
    while !finished {
        // The ticks committed since the last look (the service does not wait for the
        // driver; when the driver falls behind it takes several at once).
        let first = match service.lines.recv_timeout(Duration::from_secs(600)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = service.child.wait().map_err(fail)?;
                if last_tick >= end {
                    break;
                }
                return Err(fail(format!("serve exited ({status}) after the tick at {}", exec::iso(last_tick))));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(fail("no tick for 10 minutes")),
        };
        let mut lines = vec![first];
        lines.extend(service.lines.try_iter());
        let mut newest = None;
        for line in &lines {
            if line.contains("tick failed") || line.contains("failed to evaluate") {
                eprintln!("bench-soak: {line}");
                tick_failures += 1;
            }
            let tick = line
                .strip_prefix("tick ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|t| load::parse_timestamp(t.trim_end_matches(':')).ok());
            if let Some(t) = tick {
                newest = Some(t);
                caught_up += 1;
            }
        }
        let Some(t) = newest else { continue };
        caught_up -= 1;
        last_tick = t;
        finished = t >= end;
        let alive = matches!(service.child.try_wait(), Ok(None));
        let a = service.addr.clone();
        // Stream the rows up to the next tick, a batch per table of at most 5,000 rows.
        let mut bodies: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        while next_row < streams.len() && streams[next_row].0 <= t + every + ahead {
            let (_, table, line) = &streams[next_row];
            bodies.entry(table).or_default().push(line.clone());
            next_row += 1;
        }
        for (table, lines) in bodies {
            for (k, chunk) in lines.chunks(5000).enumerate() {
                let body = format!("{}\n{}\n", headers.get(table).cloned().unwrap_or_default(), chunk.join("\n"));
                let key = format!("soak-{t}-{table}-{k}");
                let extra = [("Content-Type", "text/csv"), ("Idempotency-Key", key.as_str())];
                match call(&a, "POST", &format!("/api/v1/signals/{table}"), &token, &extra, body.as_bytes())? {
                    (200 | 201, _) => pushed += chunk.len(),
                    (status, text) => {
                        refused += chunk.len();
                        eprintln!("bench-soak: batch refused ({status}): {text}");
                    }
                }
            }
        }
        let pid = service.child.id();
        let open = if alive && t >= next_hour {
            // An hour has passed: the operator's round and a reload.
            next_hour = (t / 3_600_000_000 + 1) * 3_600_000_000;
            hour += 1;
            // The last two hours run the rules as given, for the final comparison.
            let step = if t >= end - 2 * 3_600_000_000 { 4 } else { (hour - 1) % 4 };
            let files = RuleEdits { broken: &broken, changed: &changed_rule, original: &original_rule };
            match operator_round(&a, &token, &mut acked, &files, step) {
                Ok((open, reload)) => {
                    match reload {
                        Reload::Ok => reloads.0 += 1,
                        Reload::Refused => reloads.1 += 1,
                        Reload::Unexpected => reloads.2 += 1,
                    }
                    open
                }
                // The service reached --until and stopped (or is stopping) while the driver
                // was behind: no round to do. One that died early shows as missing ticks.
                Err(e) => {
                    if exits_within(&mut service.child, Duration::from_secs(15)) {
                        0
                    } else {
                        return Err(e);
                    }
                }
            }
        } else {
            samples.last().map_or(0, |s| s.open)
        };
        let rss = rss_kib(pid);
        // Once the service has stopped there is nothing to sample.
        if rss > 0 {
            let sample = Sample { at: t, rss_kib: rss, state_bytes: file_size(&state), signals_bytes: file_size(&ingest_db), open };
            // Written as it comes, so a run that fails keeps its samples.
            let _ = writeln!(csv, "{}", sample_line(&sample));
            samples.push(sample);
        }
        // The service may have reached --until while the driver was behind: nothing to kill.
        let alive = alive && matches!(service.child.try_wait(), Ok(None));
        if alive && t >= next_kill && !finished {
            // Once a day: SIGKILL in the middle of whatever it does, and a restart.
            next_kill = (t / day + 1) * day;
            kills += 1;
            let _ = Command::new("kill").args(["-KILL", &service.child.id().to_string()]).status();
            let _ = service.child.wait();
            service = start_service(&serve_args, &out.join("serve.log"))?;
            if let Ok(mut shared) = addr.write() {
                shared.clone_from(&service.addr);
            }
            // Every acknowledgement and resolution survived.
            check_acks(&service.addr, &token, &acked)?;
        }
        if t % day == 0 {
            outln!(
                "  {}: {} ticks, RSS {:.0} MiB, state {:.1} MiB, signals {:.1} MiB, {} open, {:.0} s",
                exec::iso(t),
                samples.len(),
                samples.last().map_or(0.0, |s| s.rss_kib as f64 / 1024.0),
                file_size(&state) as f64 / 1048576.0,
                file_size(&ingest_db) as f64 / 1048576.0,
                open,
                started.elapsed().as_secs_f64()
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = service.child.wait();
    for c in client_threads {
        let _ = c.join();
    }

    // The checks.
    let mut problems = Vec::new();
    let ticks = store::ticks(&state).map_err(fail)?;
    let want: Vec<i64> = exec::tick_series(cut, end, every);
    let written: HashSet<i64> = ticks.iter().copied().collect();
    let missing = want.iter().filter(|t| !written.contains(t)).count();
    if missing > 0 || ticks.len() != written.len() {
        problems.push(format!("{missing} tick(s) missing, {} written twice", ticks.len() - written.len()));
    }
    let stored = store::list(&state, store::Listing::All).map_err(fail)?;
    let mut open_identities: HashMap<exec::Identity, usize> = HashMap::new();
    for f in stored.iter().filter(|f| f.status != store::Status::Resolved) {
        *open_identities
            .entry((f.finding_type.clone(), f.tenant_id.clone(), f.site_id.clone(), f.guard_id.clone(), f.entity_id.clone()))
            .or_default() += 1;
    }
    let duplicated = open_identities.values().filter(|n| **n > 1).count();
    if duplicated > 0 {
        problems.push(format!("{duplicated} finding identities open twice"));
    }
    let by_id: HashMap<i64, &store::Stored> = stored.iter().map(|f| (f.id, f)).collect();
    let mut lost_acks = 0;
    for (id, status) in &acked {
        match by_id.get(id) {
            Some(f) if f.status.name() == *status || (*status == "ACKNOWLEDGED" && f.status == store::Status::Resolved) => {
                let history = store::history(&state, *id).map_err(fail)?;
                let acks = history.iter().filter(|h| h.1 == "acknowledged").count();
                let resolutions = history.iter().filter(|h| h.1 == "resolved").count();
                if acks > 1 || resolutions > 1 {
                    problems.push(format!("finding {id}: {acks} acknowledgements and {resolutions} resolutions recorded"));
                }
            }
            // Left with the state's retention, resolved.
            None if *status == "RESOLVED" => {}
            _ => lost_acks += 1,
        }
    }
    if lost_acks > 0 {
        problems.push(format!("{lost_acks} acknowledgement(s) or resolution(s) lost"));
    }
    // The findings holding at the last tick against a cold audit of the kept rows.
    let signals = load::load(&ingest_db).map_err(fail)?;
    let set = ruleset::load_dirs(&rules_dir, &runbooks_dir).map_err(|f| fail(f.sources.render(&f.diagnostics, false)))?;
    let (cold, failures) = exec::evaluate_all(&signals, &set, end, &exec::Filter::default());
    if !failures.is_empty() {
        problems.push(format!("the cold audit failed: {}", failures[0]));
    }
    let cold: HashSet<_> = cold.iter().map(|f| f.identity()).collect();
    let last = exec::iso(end);
    let held: HashSet<_> = stored
        .iter()
        .filter(|f| f.holding && f.last_seen == last)
        .map(|f| (f.finding_type.clone(), f.tenant_id.clone(), f.site_id.clone(), f.guard_id.clone(), f.entity_id.clone()))
        .collect();
    let only_cold = cold.difference(&held).count();
    let only_held = held.difference(&cold).count();
    if only_cold + only_held > 0 {
        problems.push(format!("at the last tick {only_cold} finding(s) only in the cold audit, {only_held} only in the service"));
        for f in cold.difference(&held).take(5).chain(held.difference(&cold).take(5)) {
            eprintln!("bench-soak:   {f:?}");
        }
    }

    // The samples and their plot.
    std::fs::write(out.join("soak.svg"), plot(&samples, cut, b)).map_err(fail)?;
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    let daily_peak: Vec<String> = samples
        .chunks((day / every) as usize)
        .map(|c| format!("{:.0}", c.iter().map(|s| s.rss_kib as f64 / 1024.0).fold(0.0, f64::max)))
        .collect();
    outln!(
        "{} ticks in {:.0} s; {pushed} rows pushed ({refused} refused); {} reloads ok, {} broken ones refused, {} unexpected; {kills} kill -9 and restarts",
        samples.len(),
        started.elapsed().as_secs_f64(),
        reloads.0,
        reloads.1,
        reloads.2
    );
    outln!("the driver took {caught_up} tick(s) late, together with a later one (rows are pushed four ticks ahead)");
    outln!(
        "live feed: {} connections, {} events; operator: {} acknowledgements and resolutions",
        connections.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed),
        acked.len()
    );
    outln!("RSS: peak per day [{}] MiB; last {:.0} MiB", daily_peak.join(", "), rss.last().copied().unwrap_or(0.0));
    outln!(
        "state database {:.1} MiB, signals database {:.1} MiB at the end; {} findings stored, {} holding at the last tick ({} in the cold audit)",
        file_size(&state) as f64 / 1048576.0,
        file_size(&ingest_db) as f64 / 1048576.0,
        stored.len(),
        held.len(),
        cold.len()
    );
    outln!("samples: {}; plot: {}", out.join("soak.csv").display(), out.join("soak.svg").display());
    if tick_failures > 0 {
        problems.push(format!("{tick_failures} tick or rule failures in the service's log"));
    }
    if problems.is_empty() {
        outln!("ok: every tick written once, no finding duplicated or lost, every acknowledgement kept");
        Ok(())
    } else {
        Err(fail(problems.join("; ")))
    }
}

/// One sample as a line of `soak.csv`.
fn sample_line(s: &Sample) -> String {
    format!(
        "{},{:.1},{:.2},{:.2},{}",
        exec::iso(s.at),
        s.rss_kib as f64 / 1024.0,
        s.state_bytes as f64 / 1048576.0,
        s.signals_bytes as f64 / 1048576.0,
        s.open
    )
}

/// The rule files a reload edits.
struct RuleEdits<'a> {
    broken: &'a Path,
    changed: &'a Path,
    original: &'a str,
}

/// How a reload went against what its edit should give.
enum Reload {
    Ok,
    Refused,
    Unexpected,
}

/// An hour's operator round that keeps up: acknowledge the oldest thousand new findings
/// (one bulk request), resolve every one of the oldest thousand acknowledged that cleared,
/// then reload the rules after edit `step`: 0 adds
/// a broken file, 1 removes it, 2 changes a parameter, 3 restores it, 4 puts everything back.
/// Returns how many findings are open after it and how the reload went.
fn operator_round(
    a: &str,
    token: &str,
    acked: &mut HashMap<i64, &'static str>,
    files: &RuleEdits,
    step: u64,
) -> Result<(usize, Reload), CliError> {
    let new: Vec<i64> =
        findings_with(a, token, "new")?.iter().filter_map(|f| f["id"].as_i64()).filter(|id| !acked.contains_key(id)).collect();
    bulk_step(a, token, "acknowledge", &new, acked, "ACKNOWLEDGED")?;
    let cleared: Vec<i64> =
        findings_with(a, token, "acknowledged")?.iter().filter(|f| f["holding"] == false).filter_map(|f| f["id"].as_i64()).collect();
    bulk_step(a, token, "resolve", &cleared, acked, "RESOLVED")?;
    let restore = || -> Result<(), CliError> {
        if files.broken.exists() {
            std::fs::remove_file(files.broken).map_err(fail)?;
        }
        std::fs::write(files.changed, files.original).map_err(fail)
    };
    match step {
        0 => std::fs::write(files.broken, "rule BROKEN {\n  when count(\n}\n").map_err(fail)?,
        2 => std::fs::write(files.changed, files.original.replace("param window = 15m", "param window = 20m")).map_err(fail)?,
        _ => restore()?,
    }
    let (code, text) = call(a, "POST", "/api/v1/rules/reload", token, &[], b"")?;
    let reload = match (step, code) {
        (0, 422) => Reload::Refused,
        (1..=4, 200) => Reload::Ok,
        _ => {
            eprintln!("bench-soak: reload (edit {step}) answered {code}: {}", text.lines().next().unwrap_or(""));
            Reload::Unexpected
        }
    };
    Ok((open_count(a, token)?, reload))
}

/// Every recorded acknowledgement or resolution is in the service's store.
fn check_acks(addr: &str, token: &str, acked: &HashMap<i64, &'static str>) -> Result<(), CliError> {
    // Every stored finding, a page of a thousand at a time (one request per finding took
    // hours at 1,000 sites, while the service ran on without the driver's rows).
    let mut have: HashMap<i64, String> = HashMap::new();
    for page in 0.. {
        let path = format!("/api/v1/findings?status=all&limit=1000&offset={}&sort=oldest", page * 1000);
        let (code, body) = call(addr, "GET", &path, token, &[], b"")?;
        if code != 200 {
            return Err(fail(format!("after a restart, listing the findings: {code} {body}")));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(fail)?;
        let rows = v["findings"].as_array().cloned().unwrap_or_default();
        for f in &rows {
            if let (Some(id), Some(status)) = (f["id"].as_i64(), f["status"].as_str()) {
                have.insert(id, status.to_string());
            }
        }
        if rows.len() < 1000 {
            break;
        }
    }
    for (id, want) in acked {
        let kept = match (*want, have.get(id).map(String::as_str)) {
            (want, Some(now)) => now == want || (want == "ACKNOWLEDGED" && now == "RESOLVED"),
            // Removed by --keep-resolved.
            ("RESOLVED", None) => true,
            _ => false,
        };
        if !kept {
            return Err(fail(format!("after a restart, finding {id} is {:?}; it was {want}", have.get(id))));
        }
    }
    Ok(())
}

/// One plotted quantity of a sample.
type Measure = fn(&Sample) -> f64;

/// The samples as an SVG line chart: resident memory and database sizes over the
/// simulated days, kills marked.
fn plot(samples: &[Sample], start: i64, b: &BenchSoak) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 380.0, 60.0, 20.0, 40.0, 50.0);
    let days = f64::from(b.days.max(1));
    let series: [(&str, &str, Measure); 3] = [
        ("resident memory (MiB)", "#1f77b4", |s: &Sample| s.rss_kib as f64 / 1024.0),
        ("state database (MiB)", "#d62728", |s: &Sample| s.state_bytes as f64 / 1048576.0),
        ("signals database (MiB)", "#2ca02c", |s: &Sample| s.signals_bytes as f64 / 1048576.0),
    ];
    let top_value = samples.iter().flat_map(|s| series.iter().map(move |(_, _, f)| f(s))).fold(1.0, f64::max) * 1.1;
    let x = |t: i64| left + (t - start) as f64 / 86_400_000_000.0 / days * (w - left - right);
    let y = |v: f64| h - bottom - v / top_value * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"14\">vigil serve, {} sites, {} simulated days (a SIGKILL and restart at every day)</text>\n",
        b.sites, b.days
    );
    for i in 0..=5 {
        let v = top_value * f64::from(i) / 5.0;
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
            w - right,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        ));
    }
    for d in 0..=b.days {
        let xd = x(start + i64::from(d) * 86_400_000_000);
        svg.push_str(&format!(
            "<line x1=\"{xd:.1}\" x2=\"{xd:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"#bbb\" stroke-dasharray=\"3 3\"/><text x=\"{xd:.1}\" y=\"{}\" text-anchor=\"middle\">day {d}</text>\n",
            h - bottom,
            h - bottom + 18.0
        ));
    }
    for (i, (name, color, f)) in series.iter().enumerate() {
        let points: Vec<String> = samples.iter().map(|s| format!("{:.1},{:.1}", x(s.at), y(f(s)))).collect();
        svg.push_str(&format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n", points.join(" ")));
        let lx = left + 10.0 + 230.0 * i as f64;
        svg.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{name}</text>\n",
            h - 14.0,
            lx + 20.0,
            h - 9.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Has the child exited, or does it within `limit`?
fn exits_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
