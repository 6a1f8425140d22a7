#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = kubescaler::Config::parse();
    kubescaler_server::telemetry::init_with_default(config.log_format, kubescaler::DEFAULT_LOG_FILTER);
    kubescaler_server::limits::raise_open_files();
    let shutdown = kubescaler_server::shutdown::token_on_signal();
    let suite = kubescaler::start(config, shutdown).await?;
    suite.run_until_stopped().await
}
