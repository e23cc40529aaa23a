//! The class table: many `report.json` files merged into one steps × submissions view.
//! (Being written on branch `class`.)

use std::path::Path;

/// Merge `reports` into the class table; writes `class.md` and `class.csv` into `out` when
/// given and returns the Markdown table.
pub fn merge(reports: &[&Path], out: Option<&Path>) -> anyhow::Result<String> {
    let _ = (reports, out);
    anyhow::bail!("class table: not implemented yet")
}
