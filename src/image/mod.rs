//! Images: parse a reference, fetch it from a registry, unpack its layers safely, and keep it
//! in the store at `<root>/<name>/{config.json,rootfs}`.

pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

use crate::config::Paths;
use crate::Result;

pub use store::{Image, ImageConfig};

/// `devoxx-docker pull`: fetch the image unless the same digest is already stored.
pub fn pull(paths: &Paths, reference: &str) -> Result<Image> {
    let _ = (paths, reference);
    todo!("image::pull")
}

/// The image for `run`: from the store, pulled first when missing.
pub fn ensure(paths: &Paths, reference: &str) -> Result<Image> {
    let name = reference::store_name(reference)?;
    match Image::open(&paths.root, &name) {
        Err(crate::Error::ImageNotFound(_)) => pull(paths, reference),
        found => found,
    }
}

/// `devoxx-docker images`: one line per stored image (name, reference, digest, size).
pub fn print_images(paths: &Paths) -> Result<()> {
    let _ = paths;
    todo!("image::print_images")
}

/// `devoxx-docker rmi`: remove one stored image.
pub fn remove(paths: &Paths, reference: &str) -> Result<()> {
    let _ = (paths, reference);
    todo!("image::remove")
}
