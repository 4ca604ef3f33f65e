//! The HTTP-01 responder: answers `GET /.well-known/acme-challenge/{token}` with
//! the key authorization of a challenge that is being validated. Unknown tokens
//! get 404; nothing else is served.

use std::future::Future;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use certfleet_store::Store;

/// Tokens are base64url; anything else cannot be a token.
fn plausible_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

async fn challenge(State(store): State<Store>, Path(token): Path<String>) -> Response {
    if !plausible_token(&token) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match store.http01_key_authorization(&token).await {
        Ok(Some(key_authorization)) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            key_authorization,
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(%error, "responder cannot read challenges");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The responder's routes.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(store)
}

/// Serves the responder on `listener` until `shutdown` completes.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Small answers go out at once instead of waiting for a delayed ACK.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}
