//! The command line, as DESIGN.md's CLI contract names it.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kasi",
    version,
    about = "Session affinity for Knative Serving behind Istio: inspect, demo, install",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every command shares.
#[derive(Debug, Args)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of Knative Serving's system components.
    #[arg(
        long,
        global = true,
        value_name = "NS",
        default_value = "knative-serving"
    )]
    pub system_namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the local lab and open the terminal UI on it.
    Demo,
    /// Decode a session cookie: a raw value, name=value, or a whole Cookie:/Set-Cookie: line.
    Decode {
        /// The cookie, as copied from a browser, curl -v or an Envoy log.
        value: String,
        /// Print {"format","address","expires","expired"} as JSON.
        #[arg(long)]
        json: bool,
        /// The cookie's name, when the line holds several cookies.
        #[arg(long, value_name = "NAME")]
        cookie_name: Option<String>,
    },
}
