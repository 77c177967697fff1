//! `palisade`: check policies, decide requests, build and inspect bundles — the command-line
//! face of Palisade's engine.
//!
//! Exit status ([`exit::Exit`]): 0 success (every request allowed), 1 a request denied,
//! 2 invalid input (every problem is printed on standard error, with `--error-format json` as
//! the engine's `Errors`), 3 replay disagreement, 4 no request denied but some pending on an
//! external authorizer (`custom-pending`).
#![forbid(unsafe_code)]

mod args;
mod commands;
mod demo;
mod exit;
mod input;
mod inventory;
mod provenance;
mod replay;
mod report;
mod serve;
mod signing;
mod summary;
mod token;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Exit;

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
            signing,
        } => commands::compile(paths, bundle, mesh, signing, output),
        Command::Inspect {
            bundle,
            trusted_keys,
        } => commands::inspect(bundle, trusted_keys, output),
        Command::Keygen { out } => signing::keygen(out, output),
        Command::Attest(args) => provenance::attest(args, output),
        Command::Verify(args) => provenance::verify(args, output),
        Command::Demo => demo::demo(output),
        Command::Replay(args) => replay::replay(args, output),
        Command::Inventory(args) => inventory::inventory(args).map_err(report::Failure::message),
        Command::Serve(args) => serve::serve(args),
    };
    match result {
        Ok(status) => status.into(),
        Err(failure) => {
            report::print_failure(&failure, cli.formats.error_format);
            Exit::Invalid.into()
        }
    }
}
