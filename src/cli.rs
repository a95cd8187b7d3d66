//! The command line: `tether run`, `tether crds`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{crds, run, telemetry};

/// Keeps AWS databases and instances in the state Kubernetes custom resources declare.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = telemetry::LogFormat::Text, env = "TETHER_LOG_FORMAT")]
    pub log_format: telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster).
    /// An option given twice takes its last value, so a wrapper's defaults can be
    /// overridden by appending.
    #[command(args_override_self = true)]
    Run(run::RunArgs),
    /// Print every CustomResourceDefinition and admission policy as multi-document
    /// YAML.
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Also write them into the Helm chart in this directory (`charts/tether`):
        /// the CRDs into its `crds/`, the admission policies into
        /// `files/admission-policies/`.
        #[arg(long, requires = "output_dir")]
        chart_dir: Option<PathBuf>,
    },
}

/// Parses the command line, runs the command and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let outcome = match cli.command {
        Command::Crds {
            output_dir: None, ..
        } => {
            print!("{}", crds::to_yaml());
            Ok(())
        }
        Command::Crds {
            output_dir: Some(dir),
            chart_dir,
        } => crds::write_dir(&dir)
            .and_then(|()| chart_dir.map_or(Ok(()), |chart| crds::write_chart(&chart)))
            .map_err(anyhow::Error::from),
        Command::Run(args) => {
            crate::memory::use_one_arena();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime
                        .block_on(run::run(args))
                        .map_err(anyhow::Error::from)
                })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "tether stopped");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
