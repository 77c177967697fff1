//! `palisade`: check policies, decide requests, build and inspect bundles — the command-line
//! face of Palisade's engine.
//!
//! Exit status: 0 success (every request allowed), 1 a request denied, 2 invalid input (every
//! problem is printed on standard error, with `--error-format json` as the engine's `Errors`),
//! 3 replay disagreement, 4 no request denied but some pending on an external authorizer
//! (`custom-pending`).
#![forbid(unsafe_code)]

mod args;
mod commands;
mod demo;
mod input;
mod inventory;
mod replay;
mod report;
mod summary;
mod token;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Exit status for invalid input.
const INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = cli.formats.output;
    let result = match &cli.command {
        Command::Check { paths, mesh } => commands::check(paths, mesh, output),
        Command::Eval {
            policy,
            request,
            mesh,
        } => commands::eval(policy, request, mesh, output),
        Command::Compile {
            paths,
            bundle,
            mesh,
        } => commands::compile(paths, bundle, mesh, output),
        Command::Inspect { bundle } => commands::inspect(bundle, output),
        Command::Demo => demo::demo(output),
        Command::Replay(args) => replay::replay(args, output),
        Command::Inventory(args) => inventory::inventory(args).map_err(report::Failure::message),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            report::print_failure(&failure, cli.formats.error_format);
            ExitCode::from(INVALID)
        }
    }
}
