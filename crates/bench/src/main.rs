//! `switchyard-bench`: runs the benchmarks of issue 8 and writes docs/benchmarks/.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use switchyard_bench::golden;
use switchyard_bench::kube_proxy::{iptables, nftables};

#[derive(Debug, Parser)]
#[command(name = "switchyard-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Ruleset {
    Iptables,
    IptablesPartial,
    Nftables,
    NftablesPartial,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the ruleset kube-proxy would write for the small golden cluster.
    Ruleset {
        #[arg(value_enum)]
        kind: Ruleset,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("switchyard-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ruleset { kind } => {
            let config = golden::node_config();
            let before = golden::state();
            let after = golden::state_after_endpoint_change();
            let text = match kind {
                Ruleset::Iptables => {
                    iptables::render(&config, &before, iptables::Sync::Full { previous: None })
                }
                Ruleset::IptablesPartial => {
                    iptables::render(&config, &after, iptables::Sync::Partial { previous: &before })
                }
                Ruleset::Nftables => nftables::render(&config, &before, None),
                Ruleset::NftablesPartial => nftables::render(&config, &after, Some(&before)),
            };
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
