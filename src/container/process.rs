//! Start the container process, wait for it, forward signals, report its exit status.
