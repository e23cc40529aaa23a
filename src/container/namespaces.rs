//! UTS / PID / mount (/ network) namespace setup in the child.
