use clap::Parser;

fn main() {
    let cli = deploy_guard::cli::Cli::parse();
    // Two crypto providers are built in (ring for GitHub, aws-lc-rs inside aws-sdk-s3, which
    // names its own): without a process default, rustls panics on the first TLS client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    deploy_guard::cli::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(deploy_guard::cli::run(cli));
    std::process::exit(code.code());
}
