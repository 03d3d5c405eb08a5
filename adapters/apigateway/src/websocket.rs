//! API Gateway WebSocket proxy events (`$connect`, `$disconnect`, `$default`) in and out of the
//! core's route handler: the connections function and `relay serve` both go through here.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use relay_core::handlers::subscription::{WsReply, WsRequest, WsRoute};

/// The route event as the handler takes it. An unknown route key is a client frame, as API
/// Gateway's `$default` route is.
pub fn request(event: ApiGatewayWebsocketProxyRequest) -> WsRequest {
    let ctx = event.request_context;
    let route = match ctx.route_key.as_deref() {
        Some("$connect") => WsRoute::Connect {
            token: event
                .query_string_parameters
                .first("token")
                .map(str::to_owned),
        },
        Some("$disconnect") => WsRoute::Disconnect,
        _ => WsRoute::Message(event.body.unwrap_or_default()),
    };
    WsRequest {
        connection_id: ctx.connection_id,
        request_id: ctx.request_id.unwrap_or_default(),
        route,
    }
}

/// The handler's answer as the route's integration response.
pub fn response(reply: WsReply) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = i64::from(reply.status);
    r.body = reply.body.map(|b| Body::Text(b.to_owned()));
    r
}
