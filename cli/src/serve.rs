//! `palisade serve`: the arguments read here, the server in `palisade-serve`.

use std::time::Duration;

use palisade_engine::Scope;
use palisade_serve::{Config, Recipe};

use crate::args::ServeArgs;
use crate::exit::Exit;
use crate::report::Failure;

/// Starts the server and runs until interrupted.
pub fn serve(args: &ServeArgs) -> Result<Exit, Failure> {
    palisade_serve::init_logging();
    let mut scopes = Vec::new();
    for text in &args.scopes {
        let scope: Scope = text
            .parse()
            .map_err(|e: palisade_engine::BundleError| Failure::message(e.to_string()))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        scopes.push(Scope::Mesh);
    }
    let signer = match (&args.sign, &args.key_id) {
        (Some(key), Some(id)) => Some(crate::signing::signer(key, id)?),
        _ => None,
    };
    let config = Config {
        recipe: Recipe {
            paths: args.paths.clone(),
            options: crate::input::options(&args.mesh)?,
            signer,
            scopes,
        },
        http: args.http,
        debounce: Duration::from_millis(args.debounce_ms),
    };
    let handle = palisade_serve::spawn(config).map_err(|e| Failure::message(e.to_string()))?;
    handle.wait_for_interrupt();
    Ok(Exit::Ok)
}
