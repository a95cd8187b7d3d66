//! tether's runtime: the command line, the controller process and its admin server.
//!
//! The runtime never names an AWS type; providers plug in through `tether-api`.

pub mod admin;
pub mod cli;
pub mod connection_secret;
pub mod crds;
pub mod run;
pub mod telemetry;
