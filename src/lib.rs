//! icecast-balancer: sends each listener (302) to the nearest Icecast relay
//! that has a free slot. See ARCHITECTURE.md for how the code is laid out,
//! README.md for the operator's view and docs/interface.md for the
//! interface contract (CLI, config file, HTTP, load.xsl).

pub(crate) mod alerts;
pub(crate) mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod domain;
pub mod engine;
pub(crate) mod error;
pub mod fd_limit;
pub mod fuzzing;
pub mod geo;
pub mod legacy;
pub mod logging;
pub mod memory;
pub mod poll;
pub mod routing;
pub mod store;
pub mod users;
pub mod web;

pub use app::Application;
pub use config::Settings;
pub use web::AppState;
