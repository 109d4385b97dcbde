//! The credrot binary: parse, run, exit.

fn main() -> std::process::ExitCode {
    credrot::main()
}
