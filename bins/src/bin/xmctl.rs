//! `xmctl`: the admin CLI of xray-manager. Everything but flag parsing lives
//! in `bins::cli`; run `xmctl --help` for commands and exit codes.

use std::process::ExitCode;

use bins::cli::args::Cli;
use bins::cli::error::exit;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own usage errors exit 2, which here means "rejected by
            // the manager": remap them to the documented 1.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xmctl: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    ExitCode::from(runtime.block_on(bins::cli::run(cli)))
}
