//! The grader: judges any implementation of the workshop's `run IMAGE CMD...` (mostly Go
//! submissions) step by step, from the host side of the container where printing cannot fake
//! a result. It runs submissions inside the cgroup v2 guest only (`make grade`), never as root
//! on the grader's own machine.

pub mod check;
pub mod class;
pub mod classroom;
pub mod config;
pub mod console;
pub mod host;
pub mod inspect;
pub mod invoke;
pub mod render;
pub mod report;
pub mod seed;
mod steps;
pub mod workshop;
