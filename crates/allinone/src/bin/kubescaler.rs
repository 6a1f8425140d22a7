use clap::Parser;
use kubescaler::Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    kubescaler_shared::telemetry::init(options.log_format);
    let shutdown = kubescaler_shared::shutdown::token_on_signal();
    let suite = kubescaler::start(options.into_config()?, shutdown).await?;
    suite.run_until_stopped().await
}
