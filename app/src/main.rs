use clap::Parser;
use kasi::affinity::decode;
use kasi::cli::{Cli, Command};
use std::process::ExitCode;

/// Exit code for input kasi cannot use (as clap uses for bad flags).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Decode {
            value,
            json,
            cookie_name,
        }) => match decode::decode(&value, cookie_name.as_deref()) {
            Ok(decoded) if json => {
                println!("{}", decoded.to_json());
                ExitCode::SUCCESS
            }
            Ok(decoded) => {
                print!("{}", decoded.to_text());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kasi decode: {e}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Some(Command::Demo) | None => {
            eprintln!(
                "kasi: the lab and the terminal UI are not built yet (issues 3 and 5); \
                 `kasi decode` works today"
            );
            ExitCode::FAILURE
        }
    }
}
