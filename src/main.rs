fn main() -> std::process::ExitCode {
    chargebridge::cli::main()
}
