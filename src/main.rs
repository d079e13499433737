use clap::Parser;
use mercato::cli::{Cli, run};
use mercato::config::Settings;

/// Searches, JSON answers and the job queue allocate many short-lived buffers
/// from several threads at once; glibc's allocator spent a tenth of a busy
/// search server's CPU on them (docs/BENCHMARKS.md §6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let small_pages = mercato::memory::small_pages_only();
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mercato: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    mercato::telemetry::init(&settings.log_format);
    if let Err(e) = small_pages {
        tracing::info!(error = %e, "transparent huge pages stay as the system sets them");
    }
    match run(cli, settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast::<mercato::loadtest::args::Exit>() {
            // A load test ends with its own exit code and one line (its report is already printed).
            Ok(exit) => {
                eprintln!("mercato: {exit}");
                std::process::ExitCode::from(exit.code)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "mercato failed");
                eprintln!("mercato: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
