//! Apply one layer tarball to a rootfs: whiteouts, links, modes; every path resolved inside the root.
