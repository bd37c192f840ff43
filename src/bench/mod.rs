//! `chargebridge bench`: measurement harnesses for the figures in benches/README.md.
//!
//! They are not tests (nothing here asserts a time); they print tables. Run them with the
//! optimised binary on an otherwise idle machine, e.g.
//! `cargo run --release -- bench scale --chargers 1000`.
//!
//! - [`scale`]: N wallboxes on Modbus TCP, each with its own OCPP session over TLS, against
//!   the real gateway binary started as a child process (its CPU and memory come from
//!   `/proc/<pid>`, apart from the load generators)
//! - [`wire`]: requests per poll cycle of every shipped map, and wire time per cycle on a
//!   pseudo-terminal line that runs at the baud rate, against the theoretical minimum
//! - [`line`]: that paced line (pure timing model plus two relay threads)
//! - [`procfs`]: CPU time and memory of a process from `/proc`
//! - [`stats`]: percentiles of measured durations

pub mod line;
pub mod procfs;
pub mod scale;
pub mod stats;
pub mod wire;

use std::process::ExitCode;

/// `chargebridge bench …`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// N simulated wallboxes on Modbus TCP, each with its own OCPP session over TLS to a
    /// loopback central system, against the gateway binary run as a child process.
    Scale(scale::ScaleArgs),
    /// Modbus requests per poll cycle of every shipped map, and wire time per cycle on a
    /// pseudo-terminal line paced at the baud rate.
    Wire(wire::WireArgs),
}

/// Runs a benchmark; exit code 0 when it completed, 2 when it could not run.
#[must_use]
pub fn main(command: BenchCommand) -> ExitCode {
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            match command {
                BenchCommand::Scale(args) => scale::run(args).await,
                BenchCommand::Wire(args) => wire::run(args).await,
            }
        }),
        Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints a line to stdout; a reader that went away (`| head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use out;
