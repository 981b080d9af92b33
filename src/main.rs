use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lakecube::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(lakecube::cli::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("{}", e.render());
            std::process::ExitCode::from(1)
        }
    }
}
