use clap::Parser;

fn main() {
    let cli = deploy_guard::cli::Cli::parse();
    deploy_guard::cli::init_logging();
    deploy_guard::cli::keep_secrets_in_the_process();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(deploy_guard::cli::run(cli));
    std::process::exit(code.code());
}
