use clap::Parser;
use kubescaler_main::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    kubescaler_server::telemetry::init(config.common.log_format);
    kubescaler_server::limits::raise_open_files();
    let shutdown = kubescaler_server::shutdown::token_on_signal();
    kubescaler_main::build(config, shutdown).await?.run_until_stopped().await?;
    Ok(())
}
