//! Docker-style image references and their store names.

use crate::Result;

/// The store directory name for a reference (provisional: bare names map to themselves).
pub fn store_name(reference: &str) -> Result<String> {
    Ok(reference.to_owned())
}
