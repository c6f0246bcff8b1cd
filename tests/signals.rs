//! Signal loading from a DuckDB database file: typed, zoned and text timestamps.

mod common;

use vigil_engine::duckdb::Connection;
use vigil_engine::exec::{self, Filter};
use vigil_engine::load;

fn database(phone_ts: &str) -> std::path::PathBuf {
    let path = common::temp_dir("duckdb-file").join("signals.duckdb");
    let conn = Connection::open(&path).expect("create");
    conn.execute_batch(&format!(
        "CREATE TABLE sites AS SELECT 'T1' AS tenant_id, 'S1' AS site_id, 'x' AS name, 'Europe/London' AS timezone, 51.5 AS lat, -0.12 AS lon, 200 AS geofence_m, true AS active;
         CREATE TABLE shifts (tenant_id VARCHAR, site_id VARCHAR, shift_id VARCHAR, guard_id VARCHAR, starts_at TIMESTAMPTZ, ends_at TIMESTAMPTZ, checked_in_at TIMESTAMPTZ, checked_out_at TIMESTAMPTZ);
         INSERT INTO shifts VALUES ('T1', 'S1', 'SH1', 'G1', '2025-10-04T08:00:00Z', '2025-10-04T16:00:00Z', '2025-10-04T08:00:00Z', NULL);
         CREATE TABLE phone_events (tenant_id VARCHAR, site_id VARCHAR, guard_id VARCHAR, device_id VARCHAR, ts VARCHAR, kind VARCHAR);
         INSERT INTO phone_events VALUES ('T1', 'S1', 'G1', 'D1', '2025-10-04T10:30:00Z', 'heartbeat'), ('T1', 'S1', 'G1', 'D1', '{phone_ts}', 'heartbeat');
         CREATE TABLE notes (x INTEGER);"
    ))
    .expect("fill");
    path
}

#[test]
fn a_duckdb_file_with_zoned_and_text_timestamps_loads() {
    let signals = load::load(&database("2025-10-04T12:30:00+01:00")).expect("load");
    assert!(signals.warnings.iter().any(|w| w.contains("`notes` ignored")), "{:?}", signals.warnings);
    let at = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let filter = Filter { rules: ["CORRELATION_SILENT_SITE".to_string()].into(), ..Default::default() };
    let findings = exec::evaluate(&signals, &common::shipped_rules(), at, &filter).expect("audit");
    // The +01:00 event is 11:30 UTC: inside the 60m window, so the site is not silent.
    assert!(findings.is_empty(), "{}", common::jsonl(&findings));
    let earlier = load::load(&database("2025-10-04T11:30:00+02:00")).expect("load");
    let findings = exec::evaluate(&earlier, &common::shipped_rules(), at, &filter).expect("audit");
    assert_eq!(findings.len(), 1, "09:30 UTC is outside the window");
}

#[test]
fn a_text_timestamp_without_zone_in_a_duckdb_file_is_refused_with_its_row() {
    let err = load::load(&database("2025-10-04 11:30:00")).err().expect("refused");
    assert_eq!((err.row, err.column.as_deref()), (Some(2), Some("ts")));
    assert!(err.to_string().contains("has no zone"), "{err}");
}

#[test]
fn json_lines_load_and_bad_lines_are_refused_with_their_line() {
    let good = common::write_dir(
        "jsonl",
        &[(
            "location_updates.jsonl",
            "{\"tenant_id\":\"T1\",\"site_id\":\"S1\",\"guard_id\":\"G1\",\"device_id\":\"D1\",\"ts\":\"2025-10-04T11:00:00Z\",\"lat\":51.5,\"lon\":-0.12,\"accuracy_m\":5}\n\n\
             {\"tenant_id\":\"T1\",\"site_id\":\"S1\",\"guard_id\":\"G1\",\"device_id\":\"D1\",\"ts\":\"2025-10-04T11:05:00Z\",\"lat\":51.5,\"lon\":-0.12,\"accuracy_m\":null}\n",
        )],
    );
    let signals = load::load(&good).expect("load");
    let n: i64 =
        signals.conn.query_row("SELECT count(*) FROM raw.location_updates WHERE accuracy_m IS NULL", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 1);
    let bad = common::write_dir(
        "jsonl-bad",
        &[("location_updates.jsonl", "{\"tenant_id\":\"T1\",\"site_id\":\"S1\",\"guard_id\":\"G1\",\"device_id\":\"D1\",\"ts\":\"2025-10-04T11:00:00Z\",\"lat\":\"north\",\"lon\":-0.12,\"accuracy_m\":5}\n")],
    );
    let err = load::load(&bad).err().expect("refused");
    assert!(err.to_string().ends_with("location_updates.jsonl:1: row 1, column `lat`: `north` is not a number"), "{err}");
}
