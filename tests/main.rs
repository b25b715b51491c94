//! End-to-end tests: the real `glimpse` binary with real config files, a
//! real notify socket and systemd's own unit checker. One test binary, as
//! in ripgrep (`autotests = false`).

mod analysis;
mod capture;
mod cli;
mod lifecycle;
mod model;
mod systemd;
mod util;
