//! The container root: overlay writable layer, pivot_root, /proc, /dev, /etc files.
