//! The Spark backend against a real Spark Connect server (`--features spark`): the
//! findings from Spark and from DuckDB for the same signals, rules and ticks are the same
//! bytes of JSON lines.
//!
//! The server is started from the `pyspark` package in a virtual environment under the
//! target directory (`tools/spark/server.sh`, which installs it on first use), on a free
//! loopback port, once for this file's tests; it stops when the test process ends.
#![cfg(feature = "spark")]

mod common;

use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::server::{twins, Server};
use common::{jsonl, root, shipped_rules, temp_dir, vigil};
use vigil_engine::exec::{self, Filter};
use vigil_engine::generate::{self, FleetSpec};
use vigil_engine::load::{self, Signals};

/// The running server's address (`sc://127.0.0.1:PORT`).
fn server() -> &'static str {
    static REMOTE: OnceLock<String> = OnceLock::new();
    REMOTE.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let out = std::process::Command::new(root().join("tools/spark/server.sh"))
            .args(["start", &port.to_string(), &std::process::id().to_string()])
            .output()
            .expect("run tools/spark/server.sh");
        assert!(out.status.success(), "starting Spark: {}", String::from_utf8_lossy(&out.stderr));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(180), "Spark Connect did not listen on {port} within 3 minutes");
            std::thread::sleep(Duration::from_millis(500));
        }
        format!("sc://127.0.0.1:{port}")
    })
}

/// One test at a time on the one local[2] server (each statement already uses both cores).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The same signals, once in DuckDB and once staged to Spark.
fn both(load: impl Fn() -> Signals, label: &str) -> (Signals, Signals) {
    let duck = load();
    let mut spark = load();
    exec::spark::attach(&mut spark, server(), &exec::spark::Stage::at(&temp_dir(label))).expect("stage to Spark");
    (duck, spark)
}

fn demo() -> Signals {
    load::load(&root().join("fixtures/demo")).expect("demo fleet")
}

/// A generated fleet whose span crosses the end of European summer time (London and
/// Berlin sites change offset at 2025-10-26T01:00Z).
fn dst_fleet() -> Signals {
    let spec = FleetSpec { sites: 16, hours: 20, seed: 11, start: t("2025-10-25T14:00:00Z"), incident_percent: 40 };
    let conn = load::open_database().expect("database");
    generate::fill(&conn, &spec).expect("fleet");
    Signals::from_connection(conn)
}

fn t(s: &str) -> i64 {
    load::parse_timestamp(s).expect("time")
}

#[test]
fn every_shipped_rule_gives_the_same_findings_on_spark_as_on_duckdb_for_the_demo_fleet() {
    let _one = one_at_a_time();
    let rules = shipped_rules();
    let (duck, spark) = both(demo, "spark-demo");
    for at in ["2025-10-04T12:00:00Z", "2025-10-03T08:00:00Z"] {
        let (expected, failed) = exec::evaluate_all(&duck, &rules, t(at), &Filter::default());
        assert!(failed.is_empty(), "{failed:?}");
        assert!(expected.len() > 5, "the demo fleet raises findings at {at}");
        let (found, failed) = exec::evaluate_all(&spark, &rules, t(at), &Filter::default());
        assert!(failed.is_empty(), "on Spark at {at}: {failed:?}");
        assert_eq!(jsonl(&found), jsonl(&expected), "at {at}");
    }
}

#[test]
fn replay_over_many_ticks_is_the_same_on_spark_for_a_fleet_crossing_the_end_of_summer_time() {
    let _one = one_at_a_time();
    let rules = shipped_rules();
    let (duck, spark) = both(dst_fleet, "spark-dst");
    let ticks = exec::tick_series(t("2025-10-25T20:00:00Z"), t("2025-10-26T10:00:00Z"), 20 * 60 * 1_000_000);
    assert!(ticks.contains(&t("2025-10-26T01:00:00Z")), "the span crosses the DST change");
    let (expected, failed) = exec::replay_ticks(&duck, &rules, &ticks, &Filter::default());
    assert!(failed.is_empty(), "{failed:?}");
    assert!(expected.len() > 20, "a fleet with incidents raises findings ({})", expected.len());
    let (found, failed) = exec::replay_ticks(&spark, &rules, &ticks, &Filter::default());
    assert!(failed.is_empty(), "on Spark: {failed:?}");
    assert_eq!(jsonl(&found), jsonl(&expected));
}

#[test]
fn the_cli_prints_the_same_bytes_with_engine_spark() {
    let _one = one_at_a_time();
    let signals = root().join("fixtures/demo");
    let stage = temp_dir("spark-cli-stage");
    let base = ["replay", "--signals", signals.to_str().unwrap(), "--from", "2025-10-04T00:00:00Z", "--to", "2025-10-04T12:00:00Z"];
    let mut duck_args = base.to_vec();
    duck_args.extend(["--every", "1h", "--format", "jsonl"]);
    let (code, expected, err) = vigil(&duck_args, &root());
    assert_eq!(code, 0, "{err}");
    assert!(expected.lines().count() > 5, "{expected}");
    let mut spark_args = duck_args.clone();
    spark_args.extend(["--engine", "spark", "--spark-remote", server(), "--spark-stage", stage.to_str().unwrap()]);
    let (code, found, err) = vigil(&spark_args, &root());
    assert_eq!(code, 0, "{err}");
    assert_eq!(found, expected);
    // The staged Parquet files are the cluster's input: one per signal table.
    assert!(stage.join("raw_sites.parquet").exists());
    // The cluster reads them where --spark-stage-uri says, so a wrong one fails at once,
    // naming the path, before any rule runs.
    let mut wrong = base.to_vec();
    let elsewhere = format!("file://{}/elsewhere", stage.display());
    wrong.extend(["--engine", "spark", "--spark-remote", server(), "--spark-stage", stage.to_str().unwrap()]);
    wrong.extend(["--spark-stage-uri", &elsewhere]);
    let (code, out, err) = vigil(&wrong, &root());
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(err.contains("--engine spark") && err.contains("elsewhere"), "{err}");
}

/// `vigil serve --engine spark`: the served ticks (every shipped rule at 10:00, the
/// 5-minute ones at 10:05, over two tenants whose ids collide) store the same findings,
/// in the same order and with the same identities, as a DuckDB service over the same
/// files; each tick's staging directory is gone once the tick is done.
#[test]
fn served_ticks_on_spark_store_what_duckdb_stores() {
    let _one = one_at_a_time();
    let signals = twins("spark-serve-signals");
    let stage = temp_dir("spark-serve-stage");
    let stored = |label: &str, extra: &[&str]| {
        let dir = common::library(label);
        let mut args = vec!["--until", "2025-10-04T10:05:00Z", "--tick-interval", "0s"];
        args.extend(extra);
        let mut server = Server::start(&dir, &signals, &args);
        server.wait_for_within("tick 2025-10-04T10:05:00Z", Duration::from_secs(600));
        server.terminate();
        let failed: Vec<&String> = server.seen.iter().filter(|l| l.contains("failed")).collect();
        assert!(failed.is_empty(), "{label}: {failed:?}");
        let (code, out, err) = vigil(&["findings", "list", "--state", "state.duckdb", "--status", "all", "--format", "jsonl"], &dir);
        assert_eq!(code, 0, "{err}");
        (out, std::mem::take(&mut server.seen))
    };
    let ticks = |log: &[String]| log.iter().filter(|l| l.starts_with("tick ")).cloned().collect::<Vec<_>>();
    let (expected, duck_log) = stored("spark-serve-duck", &[]);
    assert!(expected.lines().count() > 20, "the twin fleet raises findings:\n{expected}");
    assert!(expected.contains("\"T900\""), "both tenants raise findings");
    // The cluster reads the staged files by the URI it is given (here a `file://` one).
    let uri = format!("file://{}", stage.display());
    let spark = ["--engine", "spark", "--spark-remote", server(), "--spark-stage", stage.to_str().unwrap(), "--spark-stage-uri", &uri];
    let (found, log) = stored("spark-serve-spark", &spark);
    assert!(log.iter().any(|l| l.contains("statements run on Spark at sc://127.0.0.1:")), "{log:?}");
    // The same rules due, findings, new ones and baseline buckets folded at each tick.
    assert_eq!(ticks(&log), ticks(&duck_log));
    assert_eq!(ticks(&log).len(), 2);
    assert_eq!(found, expected);
    let left: Vec<_> = std::fs::read_dir(&stage).expect("stage").collect();
    assert!(left.is_empty(), "staging directories left behind: {left:?}");
}

/// Rule shapes the shipped library does not have but the language allows, whose Spark SQL
/// differs (`tests/spark/shapes.vigil`: an aggregate over the source's and the outer
/// row's columns, outer columns and `now` in filters and arguments, nested aggregates),
/// over several ticks of the demo fleet.
#[test]
fn rule_shapes_beyond_the_shipped_ones_give_the_same_findings_on_spark() {
    let _one = one_at_a_time();
    let dir = common::library("spark-shapes");
    std::fs::copy(root().join("tests/spark/shapes.vigil"), dir.join("rules/shapes.vigil")).expect("copy");
    let rules = vigil_engine::ruleset::load_dirs(&dir.join("rules"), &dir.join("runbooks")).expect("the shapes check");
    let ids = [
        "SPARK_SHAPE_OUTER_IN_AGG_ARG",
        "SPARK_SHAPE_OUTER_IN_FILTER_AND_ARG",
        "SPARK_SHAPE_NESTED",
        "SPARK_SHAPE_INLINE_WHEN",
        "SPARK_SHAPE_INLINE_LET_EXPR",
    ];
    let only = Filter { rules: ids.map(String::from).into(), ..Filter::default() };
    let (duck, spark) = both(demo, "spark-shapes-stage");
    let ticks = exec::tick_series(t("2025-10-04T09:00:00Z"), t("2025-10-04T12:00:00Z"), 3_600_000_000);
    let (expected, failed) = exec::replay_ticks(&duck, &rules, &ticks, &only);
    assert!(failed.is_empty(), "{failed:?}");
    for id in ids {
        assert!(expected.iter().any(|f| f.rule == id), "{id} raises findings on the demo fleet");
    }
    let (found, failed) = exec::replay_ticks(&spark, &rules, &ticks, &only);
    assert!(failed.is_empty(), "on Spark: {failed:?}");
    assert_eq!(jsonl(&found), jsonl(&expected));
}

/// The metric anomaly rules over six weeks of NAB's NYC taxi series (hourly ticks, so
/// several statements of up to 1,024 ticks), as shipped (EWMA, young thresholds,
/// confirmation, hysteresis) and with `statistic median_mad`.
#[test]
fn anomaly_rules_are_the_same_on_spark_over_the_nyc_taxi_series() {
    let _one = one_at_a_time();
    let dir = common::library("spark-mad");
    let anomalies = dir.join("rules/anomalies.vigil");
    let text = std::fs::read_to_string(&anomalies).expect("read");
    assert_eq!(text.matches("statistic ewma").count(), 2);
    let medians = text.replace("statistic ewma", "statistic median_mad").replace("  half_life 16\n", "");
    std::fs::write(&anomalies, medians).expect("write");
    let with_medians = vigil_engine::ruleset::load_dirs(&dir.join("rules"), &dir.join("runbooks")).expect("rules");
    let only = Filter { rules: ["ANOMALY_METRIC_ABOVE", "ANOMALY_METRIC_BELOW"].map(String::from).into(), ..Filter::default() };
    let (duck, spark) = both(|| load::load(&root().join("fixtures/nyc_taxi")).expect("nyc taxi"), "spark-nyc");
    let ticks = exec::tick_series(t("2014-12-20T00:00:00Z"), t("2015-01-31T00:00:00Z"), 3_600_000_000);
    for (label, rules) in [("shipped", shipped_rules()), ("median_mad", with_medians)] {
        let (expected, failed) = exec::replay_ticks(&duck, &rules, &ticks, &only);
        assert!(failed.is_empty(), "{label}: {failed:?}");
        // (DuckDB gives 11 shipped and 29 with medians here.)
        assert!(expected.len() >= 10, "{label}: the storm and the holidays raise anomalies ({})", expected.len());
        let (found, failed) = exec::replay_ticks(&spark, &rules, &ticks, &only);
        assert!(failed.is_empty(), "{label} on Spark: {failed:?}");
        assert_eq!(jsonl(&found), jsonl(&expected), "{label}");
    }
}
