//! `tla export --what decisions` over several data directories: the decision logs of the
//! servers of one stream merged into one (docs/scale-out.md, *The servers' decision
//! logs*).
//!
//! Each server logs the decisions it made, and also the decisions of other servers (or
//! of an earlier process) that it restored from the signed ids of the events it applied.
//! Decision ids are unique and signed with the stream's shared secret, so the
//! deployment's decision log is the union of the servers' logs keyed by decision id: a
//! restored copy and the original are the same row. The union is read page by page from
//! each directory in (time, id) order (`Store::decisions_by_time`, one index range per
//! page) and merged like sorted runs; the rows of one id meet at the heads of their
//! directories (their time is the id's own, signed), where they must be equal, or the
//! merge is refused naming the id. Nothing holds more than one page per directory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tla_store::{DecisionRow, Store};

use super::{DecisionSink, ExportArgs, PAGE, open_data, segment_names};

/// What a merge wrote.
#[derive(Debug)]
pub(super) struct Merged {
    /// The stream the directories mirror.
    pub stream: String,
    /// Rows read from each directory, in the order of `--data`.
    pub read: Vec<u64>,
    /// Distinct decisions written.
    pub written: u64,
}

/// A directory's decisions in (time, id) order, a page at a time.
pub(super) trait DecisionPages {
    /// The next at most `limit` rows after those returned so far; empty at the end.
    fn next_page(&mut self, limit: usize) -> anyhow::Result<Vec<DecisionRow>>;
}

/// One data directory's decisions of one campaign.
struct StorePages {
    store: Store,
    campaign: String,
    /// The time and id of the last row returned.
    after: Option<(i64, String)>,
}

impl DecisionPages for StorePages {
    fn next_page(&mut self, limit: usize) -> anyhow::Result<Vec<DecisionRow>> {
        let page = self.store.decisions_by_time(
            &self.campaign,
            self.after.as_ref().map(|(at, id)| (*at, id.as_str())),
            limit,
        )?;
        if let Some(last) = page.last() {
            self.after = Some((last.at_ms, last.decision_id.clone()));
        }
        Ok(page)
    }
}

/// A source being merged: its pages, the rows of the current page not taken yet.
struct Run<S> {
    name: String,
    pages: S,
    buffer: VecDeque<DecisionRow>,
    done: bool,
    read: u64,
}

impl<S: DecisionPages> Run<S> {
    /// The next row, reading a page when the buffer is empty.
    fn head(&mut self) -> anyhow::Result<Option<&DecisionRow>> {
        if self.buffer.is_empty() && !self.done {
            let page = self.pages.next_page(PAGE)?;
            self.done = page.is_empty();
            self.read += page.len() as u64;
            self.buffer.extend(page);
        }
        Ok(self.buffer.front())
    }
}

/// Two rows of one decision id are the same decision: every field equal, the
/// propensity to the bit.
fn same_row(a: &DecisionRow, b: &DecisionRow) -> bool {
    a == b && a.propensity.to_bits() == b.propensity.to_bits()
}

/// Merges sorted runs into one sequence in (time, id) order with each decision id
/// once. `next` yields each row with the index of a run that holds it.
pub(super) struct Merger<S> {
    runs: Vec<Run<S>>,
}

impl<S: DecisionPages> Merger<S> {
    /// The merge of `sources`, each named (for errors) and read in (time, id) order.
    pub(super) fn new(sources: Vec<(String, S)>) -> Merger<S> {
        Merger {
            runs: sources
                .into_iter()
                .map(|(name, pages)| Run {
                    name,
                    pages,
                    buffer: VecDeque::new(),
                    done: false,
                    read: 0,
                })
                .collect(),
        }
    }

    /// Rows read from each source so far.
    pub(super) fn read(&self) -> Vec<u64> {
        self.runs.iter().map(|run| run.read).collect()
    }

    /// The next decision of the union, or `None` at its end; refused when two sources
    /// hold different rows under one id.
    pub(super) fn next(&mut self) -> anyhow::Result<Option<(DecisionRow, usize)>> {
        let mut first: Option<(usize, (i64, String))> = None;
        for (i, run) in self.runs.iter_mut().enumerate() {
            if let Some(row) = run.head()? {
                let key = (row.at_ms, row.decision_id.clone());
                if first.as_ref().is_none_or(|(_, best)| key < *best) {
                    first = Some((i, key));
                }
            }
        }
        let Some((from, _)) = first else {
            return Ok(None);
        };
        let row = self.runs[from]
            .buffer
            .pop_front()
            .expect("the head just read");
        for other in 0..self.runs.len() {
            if other == from {
                continue;
            }
            let copy = match self.runs[other].head()? {
                Some(head) if head.decision_id == row.decision_id => {
                    self.runs[other].buffer.pop_front().expect("the head")
                }
                _ => continue,
            };
            if !same_row(&row, &copy) {
                bail!(
                    "decision {} differs between {} and {}: {:?} against {:?}; the decision \
                     logs of one deployment hold one row per decision id, so these data \
                     directories are not the servers of one stream as they were written",
                    row.decision_id,
                    self.runs[from].name,
                    self.runs[other].name,
                    row,
                    copy
                );
            }
        }
        Ok(Some((row, from)))
    }
}

/// A data directory about to be merged: what the checks need.
struct Directory {
    path: PathBuf,
    store: Store,
    stream: String,
    secret_check: String,
}

/// Opens `path` and reads which stream (and which secret) its mirror is of.
fn directory(path: &Path) -> anyhow::Result<Directory> {
    let store = open_data(path)?;
    let Some(position) = store.mirror_position()? else {
        bail!(
            "{} is not the data directory of a server on a stream (it mirrors none); several \
             --data merge the decision logs of the servers of one stream; export a single \
             server's decisions with one --data",
            path.display()
        );
    };
    let secret_check = store
        .first_mirror_record()?
        .and_then(|(_, payload)| tla_server::stream_log::genesis_secret_check(&payload))
        .with_context(|| {
            format!(
                "{}'s mirror of stream {:?} does not hold the stream's genesis record, so its \
                 secret cannot be checked against the other directories'",
                path.display(),
                position.stream
            )
        })?;
    Ok(Directory {
        path: path.to_owned(),
        store,
        stream: position.stream,
        secret_check,
    })
}

/// Checks that `directories` are distinct servers of one stream and one secret.
fn check_one_deployment(directories: &[Directory]) -> anyhow::Result<()> {
    let first = &directories[0];
    for (i, dir) in directories.iter().enumerate() {
        let real = std::fs::canonicalize(&dir.path)
            .with_context(|| format!("cannot resolve {}", dir.path.display()))?;
        for earlier in &directories[..i] {
            if std::fs::canonicalize(&earlier.path).ok().as_ref() == Some(&real) {
                bail!(
                    "--data {} is given twice (as {} and {}); give each server's data directory once",
                    real.display(),
                    earlier.path.display(),
                    dir.path.display()
                );
            }
        }
        if dir.stream != first.stream {
            bail!(
                "{} mirrors stream {:?} and {} stream {:?}: the decision logs of different \
                 streams are not one deployment's; merge the data directories of one stream",
                first.path.display(),
                first.stream,
                dir.path.display(),
                dir.stream
            );
        }
        if dir.secret_check != first.secret_check {
            bail!(
                "{} and {} mirror streams named {:?} that were started with different \
                 decision-id secrets (the stream was made again): their decision ids are not \
                 one deployment's; merge the data directories of one stream",
                first.path.display(),
                dir.path.display(),
                dir.stream
            );
        }
    }
    Ok(())
}

/// Writes the merged decision log of `args.campaign` over every `--data` directory.
pub(super) fn export(args: &ExportArgs) -> anyhow::Result<Merged> {
    let directories = args
        .data
        .iter()
        .map(|path| directory(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_one_deployment(&directories)?;
    let mut segments = Vec::new();
    let mut sources = Vec::new();
    for dir in directories.iter() {
        let campaign = dir.store.campaign(&args.campaign)?.with_context(|| {
            format!("no campaign {:?} in {}", args.campaign, dir.path.display())
        })?;
        segments.push(segment_names(&dir.store, &campaign)?);
        sources.push((
            dir.path.display().to_string(),
            StorePages {
                store: dir.store.clone(),
                campaign: args.campaign.clone(),
                after: None,
            },
        ));
    }
    let mut merger = Merger::new(sources);
    let mut sink = DecisionSink::create(&args.out, args.format)?;
    let mut written = 0u64;
    let mut page: Vec<(DecisionRow, usize)> = Vec::with_capacity(PAGE);
    loop {
        let next = merger.next()?;
        let end = next.is_none();
        page.extend(next);
        if page.len() == PAGE || (end && !page.is_empty()) {
            let rows: Vec<(&DecisionRow, &[Vec<String>])> = page
                .iter()
                .map(|(row, from)| (row, segments[*from].as_slice()))
                .collect();
            sink.write(&rows)?;
            written += page.len() as u64;
            page.clear();
        }
        if end {
            break;
        }
    }
    sink.finish(&args.out)?;
    Ok(Merged {
        stream: directories[0].stream.clone(),
        read: merger.read(),
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows in memory, handed out in pages of `page` (smaller than the merge asks for,
    /// so the merge crosses page ends).
    struct Rows {
        rows: VecDeque<DecisionRow>,
        page: usize,
    }

    impl DecisionPages for Rows {
        fn next_page(&mut self, limit: usize) -> anyhow::Result<Vec<DecisionRow>> {
            let n = limit.min(self.page).min(self.rows.len());
            Ok(self.rows.drain(..n).collect())
        }
    }

    fn row(id: &str, at_ms: i64) -> DecisionRow {
        DecisionRow {
            decision_id: id.into(),
            campaign_id: "c".into(),
            segment: 0,
            version: 1,
            propensity: 0.1 + 0.2,
            model_version: 1,
            at_ms,
            skip: None,
            revision: 1,
            held_out: false,
        }
    }

    /// The ids merged, each with the run it was taken from.
    type Taken = Vec<(String, usize)>;

    fn merge(runs: Vec<Vec<DecisionRow>>) -> anyhow::Result<(Taken, Vec<u64>)> {
        let mut merger = Merger::new(
            runs.into_iter()
                .enumerate()
                .map(|(i, rows)| {
                    (
                        format!("dir{i}"),
                        Rows {
                            rows: rows.into(),
                            page: 2,
                        },
                    )
                })
                .collect(),
        );
        let mut out = Vec::new();
        while let Some((row, from)) = merger.next()? {
            out.push((row.decision_id, from));
        }
        Ok((out, merger.read()))
    }

    #[test]
    fn the_union_is_in_time_then_id_order_with_each_id_once() {
        let (merged, read) = merge(vec![
            vec![row("a", 1), row("c", 2), row("e", 2), row("f", 5)],
            vec![
                row("b", 1),
                row("c", 2),
                row("d", 2),
                row("f", 5),
                row("g", 6),
            ],
            vec![row("c", 2), row("h", 9)],
        ])
        .unwrap();
        let ids: Vec<&str> = merged.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g", "h"]);
        assert_eq!(read, [4, 5, 2]);
        assert_eq!(merged[7], ("h".to_string(), 2));
    }

    #[test]
    fn two_rows_of_one_id_that_differ_are_refused_naming_the_id() {
        let mut other = row("c", 2);
        other.propensity = 0.3;
        let error = merge(vec![
            vec![row("a", 1), row("c", 2)],
            vec![row("b", 1), other],
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("decision c differs between dir0 and dir1"),
            "{error}"
        );
        // One directory alone, or none, is its own order.
        assert_eq!(merge(vec![vec![]]).unwrap().0, vec![]);
    }
}
