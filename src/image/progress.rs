//! Pull progress: an indicatif bar per layer on a terminal, otherwise one line per layer.
//! Everything goes to stderr; stdout stays clean for `images`.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::registry::LayerRef;

/// Progress of one pull.
pub struct Progress {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    layers: Vec<(String, u64)>,
}

impl Progress {
    /// Bars only when stderr is a terminal (no steady tick: no thread is ever started).
    pub fn new(layers: &[LayerRef]) -> Progress {
        let layers: Vec<(String, u64)> =
            layers.iter().map(|l| (short(&l.digest), l.size)).collect();
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bars = layers
                .iter()
                .map(|(digest, size)| {
                    let bar = multi.add(ProgressBar::new(*size));
                    bar.set_style(style.clone());
                    bar.set_prefix(digest.clone());
                    bar.set_message("waiting");
                    bar
                })
                .collect();
            (multi, bars)
        });
        Progress { bars, layers }
    }

    /// `n` bytes of layer `i` downloaded so far.
    pub fn downloaded(&mut self, i: usize, n: u64) {
        if let Some((_, bars)) = &self.bars {
            bars[i].set_message("downloading");
            bars[i].set_position(n);
        }
    }

    /// Layer `i` verified, now being unpacked.
    pub fn extracting(&mut self, i: usize) {
        if let Some((_, bars)) = &self.bars {
            bars[i].set_message("extracting");
        }
    }

    /// Layer `i` verified (digest and diff_id) and applied.
    pub fn done(&mut self, i: usize) {
        match &self.bars {
            Some((_, bars)) => bars[i].finish_with_message("done"),
            None => {
                let (digest, size) = &self.layers[i];
                crate::note!(
                    "layer {}/{} {digest}: {size} bytes downloaded, verified, extracted",
                    i + 1,
                    self.layers.len()
                );
            }
        }
    }
}

/// `sha256:` + 12 hex, as docker shows layer ids.
fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .map_or_else(|| digest.to_owned(), |h| h.chars().take(12).collect())
}
