//! The network modes: host, none, bridge.
