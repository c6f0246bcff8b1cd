//! `vigil`: the command line of the Vigil rules engine. Each command lives in its
//! own module under `cli/`; this file only holds the output macros every command
//! prints through.

use std::io::Write as _;
use std::process::ExitCode;

/// Prints to stdout; a closed pipe (`vigil findings list | head`) ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*)) };
}

/// [`out!`] with a newline.
macro_rules! outln {
    () => { $crate::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

mod cli;

/// Writes to stdout. When the reader has gone (a closed pipe), the command ends
/// quietly with exit code 0: what it printed was all the reader wanted.
fn write_stdout(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(i32::from(cli::EXIT_INPUT));
    }
}

fn main() -> ExitCode {
    cli::main()
}
