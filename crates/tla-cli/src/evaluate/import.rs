//! Importing a logged-bandit file (CSV or JSON lines) with a column mapping into a
//! [`LabelledLog`], which `tla_core::ope::labelled` evaluates.
//!
//! Every data row must carry an action, a reward and a propensity in (0, 1]; the first
//! row that does not is refused with its 1-based data-row number (the header is not a
//! data row; in JSON lines, blank lines are skipped and not counted).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use tla_core::ope::LoggedRow;
use tla_core::ope::labelled::LabelledLog;

/// The mapping keys `--map` accepts.
pub const MAP_KEYS: [&str; 7] = [
    "timestamp",
    "action",
    "reward",
    "propensity",
    "segment",
    "slot",
    "position",
];

/// Which columns of the file hold what.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub timestamp: Option<String>,
    pub action: String,
    pub reward: String,
    pub propensity: String,
    /// Columns whose values, together, make the context (segment, slot, others).
    pub context: Vec<String>,
}

impl Mapping {
    /// Parses `timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p` plus the
    /// `--slot` and `--context` flags. Action, reward and propensity are required.
    pub fn parse(map: &str, slot: Option<&str>, context: &[String]) -> anyhow::Result<Mapping> {
        let mut given: HashMap<&str, &str> = HashMap::new();
        for pair in map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, column)) = pair.split_once('=') else {
                bail!(
                    "--map: {pair:?} is not KEY=COLUMN (keys: {})",
                    MAP_KEYS.join(", ")
                );
            };
            let (key, column) = (key.trim(), column.trim());
            if !MAP_KEYS.contains(&key) {
                bail!(
                    "--map: unknown key {key:?}; accepted: {}",
                    MAP_KEYS.join(", ")
                );
            }
            if column.is_empty() {
                bail!("--map: {key}= names no column");
            }
            if given.insert(key, column).is_some() {
                bail!("--map: {key} is given twice");
            }
        }
        let required = |key: &str| -> anyhow::Result<String> {
            given.get(key).map(|c| c.to_string()).with_context(|| {
                format!(
                    "the column mapping does not say which column holds the {key}: add {key}=COLUMN to --map"
                )
            })
        };
        let action = required("action")?;
        let reward = required("reward")?;
        let propensity = required("propensity")?;
        let mut columns = Vec::new();
        for key in ["segment", "slot", "position"] {
            if let Some(c) = given.get(key) {
                columns.push(c.to_string());
            }
        }
        if let Some(s) = slot {
            columns.push(s.to_string());
        }
        columns.extend(context.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        columns.retain(|c| seen.insert(c.clone()));
        Ok(Mapping {
            timestamp: given.get("timestamp").map(|c| c.to_string()),
            action,
            reward,
            propensity,
            context: columns,
        })
    }
}

#[derive(Default)]
struct Builder {
    rows: Vec<LoggedRow>,
    times: Vec<Time>,
    action_index: HashMap<String, u64>,
    actions: Vec<String>,
    context_index: HashMap<String, usize>,
}

#[derive(Clone, PartialEq, PartialOrd)]
enum Time {
    Number(f64),
    Text(String),
}

impl Builder {
    fn action(&mut self, label: &str) -> u64 {
        if let Some(&a) = self.action_index.get(label) {
            return a;
        }
        let a = self.actions.len() as u64;
        self.actions.push(label.to_string());
        self.action_index.insert(label.to_string(), a);
        a
    }

    fn context(&mut self, key: &str) -> usize {
        if let Some(&c) = self.context_index.get(key) {
            return c;
        }
        let c = self.context_index.len();
        self.context_index.insert(key.to_string(), c);
        c
    }

    /// Adds data row `row` (1-based) from its fields.
    fn push(
        &mut self,
        row: usize,
        mapping: &Mapping,
        field: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        let action = field(&mapping.action)
            .filter(|a| !a.is_empty())
            .with_context(|| {
                format!(
                    "data row {row}: the action (column {:?}) is missing",
                    mapping.action
                )
            })?;
        let propensity = parse_propensity(row, &mapping.propensity, field(&mapping.propensity))?;
        let reward_text = field(&mapping.reward).filter(|r| !r.trim().is_empty());
        let reward = match reward_text {
            None => bail!(
                "data row {row}: the reward (column {:?}) is missing",
                mapping.reward
            ),
            Some(text) => match text.trim().parse::<f64>() {
                Ok(r) if r.is_finite() => r,
                _ => bail!(
                    "data row {row}: the reward (column {:?}) is {text:?}, not a finite number",
                    mapping.reward
                ),
            },
        };
        let mut key = String::new();
        for column in &mapping.context {
            key.push_str(&field(column).unwrap_or_default());
            key.push('\u{1f}');
        }
        if let Some(column) = &mapping.timestamp {
            let text = field(column).unwrap_or_default();
            self.times.push(match text.trim().parse::<f64>() {
                Ok(t) => Time::Number(t),
                Err(_) => Time::Text(text),
            });
        }
        let action = self.action(&action);
        let segment = self.context(&key);
        self.rows.push(LoggedRow {
            segment,
            action,
            propensity,
            reward,
        });
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<LabelledLog> {
        if self.rows.is_empty() {
            bail!("the log has no data rows");
        }
        let sorted_by_time = !self.times.is_empty();
        if sorted_by_time {
            let mut order: Vec<usize> = (0..self.rows.len()).collect();
            // Numbers before text; stable, so equal times keep file order.
            order.sort_by(|&a, &b| {
                self.times[a]
                    .partial_cmp(&self.times[b])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            self.rows = order.iter().map(|&i| self.rows[i]).collect();
        }
        Ok(LabelledLog {
            rows: self.rows,
            actions: self.actions,
            contexts: self.context_index.len(),
            sorted_by_time,
        })
    }
}

fn parse_propensity(row: usize, column: &str, text: Option<String>) -> anyhow::Result<f64> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        bail!("data row {row}: the propensity (column {column:?}) is missing");
    };
    let Ok(p) = text.trim().parse::<f64>() else {
        bail!("data row {row}: the propensity (column {column:?}) is {text:?}, not a number");
    };
    if p.is_nan() {
        bail!("data row {row}: the propensity (column {column:?}) is {text:?}, not a number");
    }
    if p == 0.0 {
        bail!(
            "data row {row}: the propensity (column {column:?}) is 0; a logged action must have had a positive probability, in (0, 1]"
        );
    }
    if p < 0.0 {
        bail!(
            "data row {row}: the propensity (column {column:?}) is {text}, negative; it must be in (0, 1]"
        );
    }
    if p > 1.0 {
        bail!(
            "data row {row}: the propensity (column {column:?}) is {text}, above 1; it must be in (0, 1]"
        );
    }
    Ok(p)
}

/// Reads a CSV file with a header row.
pub fn read_csv(path: &Path, mapping: &Mapping) -> anyhow::Result<LabelledLog> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("cannot read the header row of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let position = |column: &str, what: &str| -> anyhow::Result<usize> {
        header.iter().position(|h| h == column).with_context(|| {
            format!(
                "the {what} column {column:?} is not in the header of {} (columns: {})",
                path.display(),
                header.join(", ")
            )
        })
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    for (column, what) in [
        (&mapping.action, "action"),
        (&mapping.reward, "reward"),
        (&mapping.propensity, "propensity"),
    ] {
        index.insert(column.clone(), position(column, what)?);
    }
    if let Some(t) = &mapping.timestamp {
        index.insert(t.clone(), position(t, "timestamp")?);
    }
    for c in &mapping.context {
        index.insert(c.clone(), position(c, "context")?);
    }
    let mut builder = Builder::default();
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        let more = reader
            .read_record(&mut record)
            .with_context(|| format!("data row {}: cannot parse the CSV", row + 1))?;
        if !more {
            break;
        }
        row += 1;
        let field = |column: &str| -> Option<String> {
            index
                .get(column)
                .and_then(|&i| record.get(i))
                .map(str::to_string)
        };
        builder.push(row, mapping, &field)?;
    }
    builder.finish()
}

/// Reads JSON lines: one object per non-blank line.
pub fn read_jsonl(path: &Path, mapping: &Mapping) -> anyhow::Result<LabelledLog> {
    use std::io::BufRead;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut builder = Builder::default();
    let mut row = 0usize;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        row += 1;
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("data row {row}: not a JSON object"))?;
        let Some(object) = value.as_object() else {
            bail!("data row {row}: not a JSON object");
        };
        if row == 1 {
            for (column, what) in [
                (&mapping.action, "action"),
                (&mapping.reward, "reward"),
                (&mapping.propensity, "propensity"),
            ] {
                if !object.contains_key(column.as_str()) {
                    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
                    bail!(
                        "the {what} column {column:?} is not a key of the first object (keys: {})",
                        keys.join(", ")
                    );
                }
            }
        }
        let field = |column: &str| -> Option<String> {
            match object.get(column)? {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        };
        builder.push(row, mapping, &field)?;
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tla-import-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn mapping_requires_action_reward_propensity_and_collects_context() {
        let m = Mapping::parse(
            "timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p",
            Some("pos"),
            &["device".to_string(), "ctx".to_string()],
        )
        .unwrap();
        assert_eq!(m.context, ["ctx", "pos", "device"]);
        assert_eq!(m.timestamp.as_deref(), Some("ts"));
        for (map, fragment) in [
            ("reward=r,propensity=p", "holds the action"),
            ("action=a,propensity=p", "holds the reward"),
            ("action=a,reward=r,colour=c", "unknown key \"colour\""),
            ("action=a,action=b", "action is given twice"),
            ("action", "not KEY=COLUMN"),
        ] {
            let error = Mapping::parse(map, None, &[]).unwrap_err().to_string();
            assert!(error.contains(fragment), "{map}: {error}");
        }
    }

    #[test]
    fn rows_sorted_by_numeric_timestamp_and_best_logged_uses_halves() {
        use tla_core::ope::choice::EvaluationTarget;
        use tla_core::ope::labelled::evaluate_labelled_log;
        // File order is not time order: ts 10 comes before ts 9.
        let text = "ts,arm,r,p\n10,b,0,0.5\n9,a,4,0.5\n1,a,1,0.5\n2,b,0,0.5\n3,a,0,0.5\n4,b,2,0.5\n5,a,0,0.5\n6,b,2,0.5\n";
        let path = write("order.csv", text);
        let m = Mapping::parse("timestamp=ts,action=arm,reward=r,propensity=p", None, &[]).unwrap();
        let log = read_csv(&path, &m).unwrap();
        let rewards: Vec<f64> = log.rows.iter().map(|r| r.reward).collect();
        assert_eq!(rewards, [1.0, 0.0, 0.0, 2.0, 0.0, 2.0, 4.0, 0.0]);
        // First half (ts 1-4): a earns 1/2 = 0.5, b earns 2/2 = 1.0: b is picked and
        // evaluated on ts 5, 6, 9, 10, where b's rows earn 2 and 0: SNIPS 1.0.
        let e = evaluate_labelled_log(&log, &EvaluationTarget::BestLogged, None, 2).unwrap();
        assert!(e.target.contains("action \"b\""), "{}", e.target);
        assert_eq!(e.estimates[1].rows, 4);
        assert!((e.estimates[1].value - 1.0).abs() < 1e-12);
        // IPS: (1/4) (2 / 0.5 + 0) = 1.0; logged mean of the second half 1.5.
        assert!((e.estimates[0].value - 1.0).abs() < 1e-12);
        assert!((e.logged_mean - 1.5).abs() < 1e-12);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn jsonl_rows_count_non_blank_lines_and_accept_numbers_or_text() {
        let text = "{\"arm\":1,\"r\":1,\"p\":0.5}\n\n{\"arm\":\"x\",\"r\":\"0\",\"p\":\"0.5\"}\n{\"arm\":2,\"r\":0,\"p\":2}\n";
        let path = write("rows.jsonl", text);
        let m = Mapping::parse("action=arm,reward=r,propensity=p", None, &[]).unwrap();
        let error = read_jsonl(&path, &m).unwrap_err().to_string();
        assert!(
            error.contains("data row 3") && error.contains("above 1"),
            "{error}"
        );
        std::fs::remove_file(path).unwrap();
    }
}
