//! `svid-credential-provider`: see the library documentation.

fn main() -> std::process::ExitCode {
    svid_credential_provider::run()
}
