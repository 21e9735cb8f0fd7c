//! `Display` of a run's ledger and live counters: compact tables for
//! people (the CLI prints the same).

use std::fmt;

use super::handle::{EdgeStats, Report, StageReport, StageState, Stats};

/// A table: a left-aligned first column, right-aligned number columns, and
/// a left-aligned last column; two spaces between columns.
struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for (r, row) in std::iter::once(&headers).chain(&self.rows).enumerate() {
            if r > 0 {
                writeln!(f)?;
            }
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let w = widths[i];
                if i == 0 || i == n - 1 {
                    line.push_str(&format!("{cell:<w$}"));
                } else {
                    line.push_str(&format!("{cell:>w$}"));
                }
            }
            f.write_str(line.trim_end())?;
        }
        Ok(())
    }
}

/// The counters every stage row shows; `dead-lettered` and `dropped` only
/// when some stage has any (they are zero in most runs).
fn stage_table<'a>(
    stages: impl Iterator<Item = (&'a str, [u64; 7], String)> + Clone,
    last: &'static str,
) -> Table {
    let dead = stages.clone().any(|(_, c, _)| c[3] > 0);
    let dropped = stages.clone().any(|(_, c, _)| c[4] > 0);
    let mut headers = vec!["stage", "received", "processed", "emitted"];
    if dead {
        headers.push("dead-lettered");
    }
    if dropped {
        headers.push("dropped");
    }
    headers.extend(["abandoned", "restarts", last]);
    let rows = stages
        .map(|(name, c, end)| {
            let mut row = vec![name.to_owned(), c[0].to_string(), c[1].to_string()];
            row.push(c[2].to_string());
            if dead {
                row.push(c[3].to_string());
            }
            if dropped {
                row.push(c[4].to_string());
            }
            row.extend([c[5].to_string(), c[6].to_string(), end]);
            row
        })
        .collect();
    Table { headers, rows }
}

fn counters(s: &StageReport) -> [u64; 7] {
    [
        s.received,
        s.processed,
        s.emitted,
        s.dead_lettered,
        s.dropped,
        s.abandoned,
        s.restarts,
    ]
}

impl fmt::Display for Report {
    /// The status on the first line, then one row per stage:
    ///
    /// ```text
    /// completed
    /// stage    received  processed  emitted  abandoned  restarts  end
    /// numbers         0          0     1000          0         0  completed
    /// square       1000       1000     1000          0         0  completed
    /// sum          1000       1000        0          0         0  completed
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.status)?;
        let rows = self
            .stages
            .iter()
            .map(|s| (s.name.as_str(), counters(s), s.end.clone()));
        stage_table(rows, "end").write(f)
    }
}

impl fmt::Display for StageReport {
    /// One line: `square: received 1000, processed 1000, emitted 1000,
    /// abandoned 0, restarts 0, completed` (dead-lettered and dropped
    /// counts only when not zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: received {}, processed {}, emitted {}",
            self.name, self.received, self.processed, self.emitted
        )?;
        if self.dead_lettered > 0 {
            write!(f, ", dead-lettered {}", self.dead_lettered)?;
        }
        if self.dropped > 0 {
            write!(f, ", dropped {}", self.dropped)?;
        }
        write!(
            f,
            ", abandoned {}, restarts {}, {}",
            self.abandoned, self.restarts, self.end
        )
    }
}

impl fmt::Display for StageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StageState::Running => "running",
            StageState::Restarting => "restarting",
            StageState::Ended => "ended",
        })
    }
}

impl fmt::Display for EdgeStats {
    /// `numbers -> square: pending 500, buffered 0, delivered 500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}: pending {}, buffered {}, delivered {}",
            self.from, self.to, self.pending_demand, self.buffered, self.delivered
        )
    }
}

impl fmt::Display for Stats {
    /// A table of stages (with their state), a table of subscriptions, then
    /// the cancel cause and any stalls, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self.stages.iter().map(|s| {
            let c = [
                s.received,
                s.processed,
                s.emitted,
                s.dead_lettered,
                s.dropped,
                s.abandoned,
                s.restarts,
            ];
            (s.name.as_str(), c, s.state.to_string())
        });
        stage_table(rows, "state").write(f)?;
        if !self.edges.is_empty() {
            writeln!(f)?;
            let edges = Table {
                headers: vec!["subscription", "pending", "buffered", "delivered", ""],
                rows: self
                    .edges
                    .iter()
                    .map(|e| {
                        vec![
                            format!("{} -> {}", e.from, e.to),
                            e.pending_demand.to_string(),
                            e.buffered.to_string(),
                            e.delivered.to_string(),
                            String::new(),
                        ]
                    })
                    .collect(),
            };
            edges.write(f)?;
        }
        if let Some(cause) = &self.cancel_cause {
            write!(f, "\n{cause}")?;
        }
        for s in &self.stalls {
            let what = if s.starved {
                "demand but no events"
            } else {
                "events but no demand"
            };
            write!(
                f,
                "\nstalled: {} -> {}: {what} for {:?}",
                s.from, s.to, s.for_how_long
            )?;
        }
        Ok(())
    }
}
