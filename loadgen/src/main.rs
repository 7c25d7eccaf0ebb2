//! `loadgen` binary: parse flags, run, exit with the verdict
//! (0 pass, 1 SLO failed, 2 bad flags, 3 run impossible).

use clap::Parser;

fn main() {
    let cli = loadgen::cli::Cli::parse();
    match loadgen::app::main(cli) {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
