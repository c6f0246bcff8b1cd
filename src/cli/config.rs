//! `vigil serve --config FILE`: every flag of `serve` from a file, so a deployment
//! is one file under version control. The file is a flat TOML subset, one setting
//! per line: `key = "text"`, `key = 12`, `key = ["a", "b"]` (repeatable flags),
//! `#` comments. Keys are the flag names (`tick-interval` or `tick_interval`).
//! Flags given on the command line win over the file.
//!
//! The settings become command-line arguments before parsing, so the file is
//! checked by exactly the rules the flags are; its own errors name file:line:col.

use std::ffi::OsString;

/// The settings `serve` takes, as flag names; the last ones are repeatable.
const SERVE_KEYS: [&str; 30] = [
    "rules",
    "runbooks",
    "signals",
    "ingest-db",
    "retention",
    "every",
    "state",
    "tokens",
    "listen",
    "heartbeat",
    "start",
    "tick-interval",
    "until",
    "feed-stale-after",
    "silence-max",
    "actions",
    "reports-dir",
    "report-schedule",
    "retain",
    "feed-dependent",
    "report-review",
    "memory-limit",
    "temp-dir",
    "rule-budget",
    "ingest-rate",
    "keep-resolved",
    "engine",
    "spark-remote",
    "spark-stage",
    "spark-stage-uri",
];
const REPEATABLE: [&str; 3] = ["retain", "feed-dependent", "report-review"];
/// Switches: `true` gives the flag, `false` leaves it out.
const SWITCHES: [&str; 1] = ["report-schedule"];

/// One value of a setting.
#[derive(Debug, Clone, PartialEq)]
enum Setting {
    One(String),
    Many(Vec<String>),
}

/// Replaces `--config FILE` of `vigil serve` by the file's settings (those not
/// also given as flags). Other commands' arguments are returned unchanged.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let text: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let Some(serve_at) = text.iter().position(|a| a == "serve") else { return Ok(args) };
    let config_at = text.iter().position(|a| a == "--config" || a.starts_with("--config="));
    let Some(config_at) = config_at else { return Ok(args) };
    let (path, skip) = match text[config_at].strip_prefix("--config=") {
        Some(p) => (p.to_string(), 1),
        None => (text.get(config_at + 1).cloned().ok_or("--config needs a file")?, 2),
    };
    let source = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let settings = parse(&source, &path)?;
    let given = |key: &str| text.iter().any(|a| a == &format!("--{key}") || a.starts_with(&format!("--{key}=")));
    let mut out: Vec<OsString> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i >= config_at && i < config_at + skip {
            continue;
        }
        out.push(a.clone());
        if i == serve_at {
            for (key, value) in &settings {
                if given(key) {
                    continue;
                }
                match value {
                    Setting::One(v) if SWITCHES.contains(&key.as_str()) => {
                        if v == "true" {
                            out.push(OsString::from(format!("--{key}")));
                        }
                    }
                    Setting::One(v) => out.extend([OsString::from(format!("--{key}")), OsString::from(v)]),
                    Setting::Many(vs) => {
                        for v in vs {
                            out.extend([OsString::from(format!("--{key}")), OsString::from(v)]);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Parses the file: (flag name, value) in file order. Errors name file:line:col.
fn parse(source: &str, origin: &str) -> Result<Vec<(String, Setting)>, String> {
    let mut out: Vec<(String, Setting)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let at = |col: usize, m: String| format!("{origin}:{}:{}: {m}", i + 1, col + 1);
        let content = strip_comment(line);
        if content.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            let col = line.len() - line.trim_start().len();
            return Err(at(col, "expected `key = value`".into()));
        };
        let key_col = line.len() - line.trim_start().len();
        let key = key.trim().replace('_', "-");
        if !SERVE_KEYS.contains(&key.as_str()) {
            let near = SERVE_KEYS.iter().min_by_key(|k| distance(k, &key)).filter(|k| distance(k, &key) <= 2);
            let hint = near.map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
            return Err(at(key_col, format!("unknown setting `{key}`{hint}; settings are the flags of `vigil serve`")));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(at(key_col, format!("`{key}` is set twice")));
        }
        let value_col = content.find('=').map_or(0, |p| p + 1) + (value.len() - value.trim_start().len());
        let value = value.trim();
        let setting = if let Some(inner) = value.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(|| at(value_col, "a list must end with `]` on the same line".into()))?;
            let items = inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| scalar(s).map_err(|m| at(value_col, m)))
                .collect::<Result<Vec<_>, _>>()?;
            if !REPEATABLE.contains(&key.as_str()) {
                return Err(at(value_col, format!("`{key}` takes one value, not a list")));
            }
            Setting::Many(items)
        } else {
            let v = scalar(value).map_err(|m| at(value_col, m))?;
            if SWITCHES.contains(&key.as_str()) && v != "true" && v != "false" {
                return Err(at(value_col, format!("`{key}` is a switch: write true or false")));
            }
            if REPEATABLE.contains(&key.as_str()) {
                Setting::Many(vec![v])
            } else {
                Setting::One(v)
            }
        };
        out.push((key, setting));
    }
    Ok(out)
}

/// A quoted string, a number or a bare boolean.
fn scalar(text: &str) -> Result<String, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or_else(|| format!("unterminated string {text}"))?;
        if inner.contains('"') || inner.contains('\\') {
            return Err("escapes are not supported in settings; write the value plainly".into());
        }
        return Ok(inner.to_string());
    }
    if text.parse::<f64>().is_ok() || text == "true" || text == "false" {
        return Ok(text.to_string());
    }
    Err(format!("`{text}` must be quoted: \"{text}\""))
}

/// The line without a `#` comment (a `#` inside quotes stays).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn settings_become_flags_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("vigil-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("vigil.toml");
        std::fs::write(
            &file,
            "# ops\nlisten = \"127.0.0.1:9000\"  # loopback\ntokens = \"/etc/vigil/tokens\"\ntick_interval = \"2s\"\nretain = [\"shifts=60d\", \"metrics=90d\"]\n",
        )
        .expect("write");
        let args = os(&["vigil", "serve", "--config", &file.display().to_string(), "--listen", "0.0.0.0:1"]);
        let out: Vec<String> = expand(args).expect("expands").iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            out,
            [
                "vigil",
                "serve",
                "--tokens",
                "/etc/vigil/tokens",
                "--tick-interval",
                "2s",
                "--retain",
                "shifts=60d",
                "--retain",
                "metrics=90d",
                "--listen",
                "0.0.0.0:1"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert_eq!(
            parse("listn = \"x\"", "v.toml").err().as_deref(),
            Some("v.toml:1:1: unknown setting `listn` (did you mean `listen`?); settings are the flags of `vigil serve`")
        );
        assert_eq!(parse("\n  every = 5m", "v.toml").err().as_deref(), Some("v.toml:2:11: `5m` must be quoted: \"5m\""));
        assert_eq!(parse("every = \"5m\"\nevery = \"1m\"", "v.toml").err().as_deref(), Some("v.toml:2:1: `every` is set twice"));
        assert!(parse("listen = [\"a\"]", "v.toml").err().is_some_and(|e| e.contains("takes one value")));
        assert!(parse("garbage", "v.toml").err().is_some_and(|e| e.starts_with("v.toml:1:1: expected `key = value`")));
        assert_eq!(parse("state = \"a#b\" # c", "v").ok(), Some(vec![("state".to_string(), Setting::One("a#b".into()))]));
        assert_eq!(
            parse("report_schedule = \"yes\"", "v").err().as_deref(),
            Some("v:1:19: `report-schedule` is a switch: write true or false")
        );
    }

    #[test]
    fn switches_become_bare_flags() {
        let dir = std::env::temp_dir().join(format!("vigil-config-switch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("vigil.toml");
        std::fs::write(&file, "report_schedule = true\nreport_review = [\"T1\", \"T2\"]\n").expect("write");
        let out: Vec<String> = expand(os(&["vigil", "serve", "--config", &file.display().to_string()]))
            .expect("expands")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(out, ["vigil", "serve", "--report-schedule", "--report-review", "T1", "--report-review", "T2"]);
        std::fs::write(&file, "report_schedule = false\n").expect("write");
        let out = expand(os(&["vigil", "serve", "--config", &file.display().to_string()])).expect("expands");
        assert_eq!(out.len(), 2, "false leaves the switch out");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_shipped_settings_parse() {
        let settings = parse(include_str!("../../deploy/vigil.toml"), "deploy/vigil.toml").expect("parses");
        assert!(settings.iter().any(|(k, v)| k == "retain" && *v == Setting::Many(vec!["metrics=90d".into()])));
    }

    #[test]
    fn other_commands_are_left_alone() {
        let args = os(&["vigil", "audit", "--config", "x"]);
        assert_eq!(expand(args.clone()).ok(), Some(args));
    }
}
