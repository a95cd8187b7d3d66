//! Integration tests on a real control plane and AWS emulators, through
//! `tether-testkit`: one control plane and one emulator of each kind serve every test
//! of this binary, and each test works in a namespace of its own.

// Tests: a panic here fails the test, at its place.
#![allow(clippy::unwrap_used)]

mod aws_sdk;
mod bench;
mod budget;
mod cli;
mod control_plane;
mod controller;
mod data_plane;
mod db_instance;
mod db_instance_controller;
mod db_subnet_group;
mod dev_script;
mod harsh_aws;
mod helm;
mod helm_install;
mod instance;
mod operations;
mod provider_config;
mod rotation;
mod safety;
mod scale;
mod security_group;
mod self_service;
mod tenancy;
mod world;
