//! The operator's commands that talk to a running relay (local or deployed).

use std::time::Duration;

use relay_core::config::Config;
use relay_core::domain::token::{Claims, Scope, TokenKeys};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::DataDir;
use crate::secrets;

pub use crate::CliResult;

#[derive(clap::Args)]
pub struct TokenArgs {
    /// Bot id the token may see; repeat for several, `*` for all.
    #[arg(long = "bot", required = true)]
    bots: Vec<String>,
    #[arg(long, value_enum, default_value = "read")]
    scope: ScopeArg,
    /// Lifetime: a number with s, m, h or d (`90m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Subject claim (who the token is for).
    #[arg(long, default_value = "relay-cli")]
    sub: String,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Read,
    Control,
}

/// The longest `--ttl`: ten years. Anything longer is a mistake, and never a wrapped `exp`.
pub const MAX_TTL_SECS: u64 = 3650 * 86_400;

pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30m, 1h or 7d"))?;
    let unit_secs: u64 = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|secs| *secs <= MAX_TTL_SECS)
        .ok_or_else(|| format!("ttl `{s}` is too large: at most {}d", MAX_TTL_SECS / 86_400))?;
    if secs == 0 {
        return Err("ttl must be more than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

/// The client secret: `RELAY_CLIENT_SECRET`, else the data dir's development secret.
fn client_secret(
    config: &Config,
    data: &DataDir,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(s) = &config.client_secret {
        return Ok(s.expose_secret().to_owned());
    }
    match secrets::load(&data.data_dir)? {
        Some(dev) => Ok(dev.client_secret),
        None => Err("no RELAY_CLIENT_SECRET set and no development secrets in the data dir (run `relay serve` once, or set RELAY_CLIENT_SECRET)".into()),
    }
}

pub fn token(args: TokenArgs) -> CliResult {
    let config = Config::from_env()?;
    for bot in &args.bots {
        if bot != "*" {
            relay_core::BotId::parse(bot)?;
        }
    }
    let keys = TokenKeys::new(&client_secret(&config, &args.data)?)?;
    let claims = Claims {
        sub: args.sub,
        exp: i64::try_from(args.ttl.as_secs())
            .ok()
            .and_then(|ttl| chrono::Utc::now().timestamp().checked_add(ttl))
            .ok_or("ttl is too large")?,
        bots: args.bots,
        scope: match args.scope {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Control => Scope::Control,
        },
    };
    println!("{}", keys.mint(&claims)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct SendTestEventArgs {
    /// Webhook URL (a deployed stack's, or the local one).
    #[arg(long, default_value = "http://127.0.0.1:8000/api/meeting-bot/webhook")]
    url: String,
    /// Seed event type.
    #[arg(long = "type", default_value = "meeting.started")]
    event_type: String,
    #[arg(long, default_value = "test-123")]
    bot: String,
    #[command(flatten)]
    data: DataDir,
}

/// Posts `{"type":…,"data":{"botId":…}}` like the seed's curl example, with the first API
/// key, or signed with the webhook secret when only that is configured.
pub async fn send_test_event(args: SendTestEventArgs) -> CliResult {
    let config = Config::from_env()?;
    let body = json!({"type": args.event_type, "data": {"botId": args.bot}}).to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut req = http
        .post(&args.url)
        .header("content-type", "application/json");
    let first_key = config
        .auth
        .api_keys
        .first()
        .map(|k| k.expose_secret().to_owned());
    if let Some(key) = first_key {
        req = req.header("x-meeting-baas-api-key", key);
    } else if let Some(secret) = &config.auth.webhook_secret {
        let id = format!("msg_{:016x}", rand::random::<u64>());
        let ts = chrono::Utc::now().timestamp();
        let sig = relay_core::domain::auth::sign(secret.expose_secret(), &id, ts, body.as_bytes())?;
        req = req
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig);
    } else if let Some(secret) = &config.auth.callback_secret {
        req = req.header("x-mb-secret", secret.expose_secret());
    } else if let Some(dev) = secrets::load(&args.data.data_dir)? {
        req = req.header("x-meeting-baas-api-key", dev.api_key);
    } else {
        return Err("no MEETINGBAAS_API_KEY, MEETINGBAAS_WEBHOOK_SECRET or MEETINGBAAS_CALLBACK_SECRET set, and no development secrets in the data dir".into());
    }
    let resp = req.body(body).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    println!("{} {}", status.as_u16(), text);
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}").into())
    }
}

/// Where the relay's REST routes are: local by default, a deployed stack's `RestBaseUrl` too.
#[derive(clap::Args)]
pub struct RelayApi {
    #[arg(long, env = "RELAY_API_URL", default_value = "http://127.0.0.1:8000")]
    api_url: String,
    #[command(flatten)]
    data: DataDir,
}

#[derive(clap::Args)]
pub struct BotsStartArgs {
    #[arg(long)]
    meeting_url: String,
    /// The bot's display name in the meeting.
    #[arg(long, default_value = "meeting-relay")]
    name: String,
    #[command(flatten)]
    api: RelayApi,
}

#[derive(clap::Args)]
pub struct SetAccountUrlArgs {
    /// The webhook URL MeetingBaaS should post every bot's events to.
    url: String,
    #[command(flatten)]
    api: RelayApi,
}

#[derive(clap::Args)]
pub struct BotArgs {
    /// The bot's id (as `relay bots start` printed it).
    bot_id: String,
    #[command(flatten)]
    api: RelayApi,
}

#[derive(clap::Args)]
pub struct BotsListArgs {
    /// At most this many sessions (1 to 200).
    #[arg(long, default_value_t = relay_core::handlers::api::SESSIONS_DEFAULT_LIMIT)]
    limit: u32,
    #[command(flatten)]
    api: RelayApi,
}

/// Calls a control route with a short-lived (5 minutes) control token for `bots`.
async fn control_call(
    api: &RelayApi,
    bots: &[&str],
    path: &str,
    body: serde_json::Value,
) -> CliResult {
    relay_call(api, bots, Scope::Control, path, Some(body)).await
}

/// Calls a route with a short-lived (5 minutes) token of `scope` for `bots`: a POST of
/// `body`, or a GET without one; prints the answer.
async fn relay_call(
    api: &RelayApi,
    bots: &[&str],
    scope: Scope,
    path: &str,
    body: Option<serde_json::Value>,
) -> CliResult {
    let config = Config::from_env()?;
    let keys = TokenKeys::new(&client_secret(&config, &api.data)?)?;
    let token = keys.mint(&Claims {
        sub: "relay-cli".into(),
        exp: chrono::Utc::now().timestamp() + 300,
        bots: bots.iter().map(|b| (*b).to_owned()).collect(),
        scope,
    })?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}{path}", api.api_url.trim_end_matches('/'));
    let request = match body {
        Some(body) => http.post(&url).json(&body),
        None => http.get(&url),
    };
    let resp = request.bearer_auth(token).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}").into())
    }
}

pub async fn bots_start(args: BotsStartArgs) -> CliResult {
    control_call(
        &args.api,
        &["*"],
        "/api/meeting-bot/start",
        json!({"meeting_url": args.meeting_url, "bot_name": args.name}),
    )
    .await
}

pub async fn set_account_url(args: SetAccountUrlArgs) -> CliResult {
    control_call(
        &args.api,
        &["*"],
        "/api/meeting-bot/configure-webhook",
        json!({"webhook_url": args.url}),
    )
    .await
}

/// A control verb about one bot (`stop`, `resend`, `retry-callback`): a token for that bot
/// only, then `POST /api/meeting-bot/{bot_id}/{verb}`.
pub async fn bot_call(args: BotArgs, verb: &str) -> CliResult {
    let bot = relay_core::BotId::parse(&args.bot_id)?;
    control_call(
        &args.api,
        &[bot.as_str()],
        &format!("/api/meeting-bot/{bot}/{verb}"),
        json!({}),
    )
    .await
}

/// `relay bots artifacts BOT_ID`: fresh URLs through the relay's artifacts route (read scope).
pub async fn bot_artifacts(args: BotArgs) -> CliResult {
    let bot = relay_core::BotId::parse(&args.bot_id)?;
    relay_call(
        &args.api,
        &[bot.as_str()],
        Scope::Read,
        &format!("/api/meeting-bot/{bot}/artifacts"),
        None,
    )
    .await
}

/// `relay bots list`: the sessions route, with a read token for every bot.
pub async fn bots_list(args: BotsListArgs) -> CliResult {
    relay_call(
        &args.api,
        &["*"],
        Scope::Read,
        &format!("/api/meeting-bot/sessions?limit={}", args.limit),
        None,
    )
    .await
}

pub fn dlq_list(data: &DataDir) -> CliResult {
    let letters =
        crate::stream::FileDeadLetters::list(&data.data_dir.join(crate::stream::DEAD_LETTERS))?;
    for letter in &letters {
        println!("{}", serde_json::to_string(letter)?);
    }
    eprintln!("{} dead letter(s)", letters.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        assert!(parse_ttl("0s").is_err() && parse_ttl("1w").is_err() && parse_ttl("h").is_err());
    }
}
