//! Docker-style image references and their store names.
