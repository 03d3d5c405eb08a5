//! `relay`: the local host of meeting-relay (`relay serve`) and the operator's CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: `relay serve` spends a fifth of a fan-out burst in
/// glibc's malloc and free (hundreds of short-lived allocations per post across the SDK, hyper
/// and axum, freed on other threads), which mimalloc's per-thread free lists make cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod gateway;
mod http_server;
mod lambda;
mod metrics;
mod reconcile;
mod secrets;
mod serve;
mod stream;
mod web;

/// What a command returns: its error is printed and the exit code is non-zero.
pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "meeting-relay: MeetingBaaS webhooks to live browser updates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole stack in one process: webhook route, REST routes, WebSocket, stream.
    Serve(serve::ServeArgs),
    /// Mint a client token (JWT, HS256, RELAY_CLIENT_SECRET).
    Token(client::TokenArgs),
    /// Post the seed's test event to a webhook URL, authenticated with the configured key.
    SendTestEvent(client::SendTestEventArgs),
    /// Bots in meetings, through the relay's control routes (MeetingBaaS behind them).
    Bots {
        #[command(subcommand)]
        command: BotsCommand,
    },
    /// The MeetingBaaS account's webhook settings, through the relay's control routes.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Check sessions left open against MeetingBaaS (the reconciliation pass).
    Reconcile(reconcile::ReconcileArgs),
    /// The local stream's dead letters (records that failed every fan-out attempt).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum BotsCommand {
    /// Send a bot into a meeting; prints its id and a read token for it.
    Start(client::BotsStartArgs),
    /// Make a bot leave its meeting.
    Stop(client::BotArgs),
    /// Ask MeetingBaaS to send a bot's final webhook again (MeetingBaaS v2).
    Resend(client::BotArgs),
    /// Ask MeetingBaaS to send a bot's callback again, to this relay (MeetingBaaS v2).
    RetryCallback(client::BotArgs),
    /// Print a bot's fresh artifact URLs (video, audio, transcription), fetched now.
    Artifacts(client::BotArgs),
    /// Print the sessions changed most recently, open or final, newest first.
    List(client::BotsListArgs),
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Set the account-level webhook URL (default for every bot).
    SetAccountUrl(client::SetAccountUrlArgs),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print every dead letter, one JSON object a line.
    List(DataDir),
}

/// Where `relay serve` keeps data and development secrets.
#[derive(clap::Args, Clone)]
pub struct DataDir {
    #[arg(long, default_value = ".relay-data", env = "RELAY_DATA_DIR")]
    pub data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Token(args) => client::token(args),
            Command::Reconcile(args) => reconcile::run(args).await,
            Command::SendTestEvent(args) => client::send_test_event(args).await,
            Command::Dlq {
                command: DlqCommand::List(data),
            } => client::dlq_list(&data),
            Command::Bots {
                command: BotsCommand::Start(args),
            } => client::bots_start(args).await,
            Command::Bots {
                command: BotsCommand::Stop(args),
            } => client::bot_call(args, "stop").await,
            Command::Bots {
                command: BotsCommand::Resend(args),
            } => client::bot_call(args, "resend").await,
            Command::Bots {
                command: BotsCommand::RetryCallback(args),
            } => client::bot_call(args, "retry-callback").await,
            Command::Bots {
                command: BotsCommand::Artifacts(args),
            } => client::bot_artifacts(args).await,
            Command::Bots {
                command: BotsCommand::List(args),
            } => client::bots_list(args).await,
            Command::Webhook {
                command: WebhookCommand::SetAccountUrl(args),
            } => client::set_account_url(args).await,
        }
    });
    // Tasks still running (a stalled socket's, a blocking store call) do not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e}");
            ExitCode::FAILURE
        }
    }
}
