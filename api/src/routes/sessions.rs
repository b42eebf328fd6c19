//! `POST /v1/sessions`: a guest session for the student page. Off unless
//! `RYTHMIQ_GUEST_SESSIONS=true`; then it mints a short-lived token for a new anonymous user,
//! who gets the starting credits on their first submission like any new user, limited per client
//! address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorDetail};

/// How long a guest token lives: long enough to photograph, fit and download a set.
pub const GUEST_TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);

/// A new guest session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestSession {
    /// The bearer token of a new anonymous user.
    pub token: String,
    /// Seconds the token is valid for.
    pub expires_in: u64,
    /// Credits the user starts with (given on their first submission).
    pub credits: i32,
}

/// Guest sessions opened per client address in the last hour, in this API process; at most
/// 10,000 addresses are remembered.
pub type GuestLimiter = crate::limiter::SlidingWindow<IpAddr, 3600, 10_000>;

/// The address a limit applies to: an IPv6 client usually holds a whole /64, so it counts as one.
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Open a guest session: a short-lived token for a new anonymous user (404 unless guest
/// sessions are on).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    responses((status = 201, body = GuestSession),
              (status = 404, description = "guest sessions are off", body = ErrorBody),
              (status = 429, description = "too many sessions from this address", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    let guests = &state.settings.guest_sessions;
    if !guests.enabled {
        return Err(ApiError::NotFound);
    }
    // The peer address: behind a proxy it is the proxy's, so a proxy must limit guests itself.
    let client = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(a))| {
        client_key(a.ip())
    });
    if let Err(wait) = state
        .guests
        .admit(client, guests.per_address_per_hour, Instant::now())
    {
        return Ok(too_many(guests.per_address_per_hour, wait));
    }
    let user = Uuid::new_v4();
    let token =
        rythmiq_shared::auth::mint(&state.settings.jwt_secret, user, GUEST_TOKEN_TTL.as_secs())
            .map_err(|e| ApiError::internal("minting a guest token", e))?;
    tracing::info!("guest session opened");
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(GuestSession {
            token,
            expires_in: GUEST_TOKEN_TTL.as_secs(),
            credits: state.settings.starting_credits.max(0),
        }),
    )
        .into_response())
}

/// 429 `RATE_LIMITED` with `Retry-After`, in the API's error envelope.
fn too_many(limit: u32, wait: Duration) -> Response {
    let retry_after = wait.as_secs().max(1);
    let body = ErrorBody {
        error: ErrorDetail {
            code: "RATE_LIMITED",
            message: format!(
                "too many guest sessions from this address: at most {limit} an hour; \
                 retry after {retry_after} s"
            ),
        },
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after.to_string())],
        Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_per_hour_then_waits_for_the_oldest() {
        let limiter = GuestLimiter::default();
        let a = IpAddr::from([10, 0, 0, 1]);
        let t0 = Instant::now();
        assert!(limiter.admit(a, 2, t0).is_ok());
        assert!(limiter.admit(a, 2, t0 + Duration::from_secs(60)).is_ok());
        let wait = limiter.admit(a, 2, t0 + Duration::from_secs(120));
        assert_eq!(wait, Err(Duration::from_secs(3600 - 120)));
        // Another address is not affected; the first fits again once its oldest has aged out.
        assert!(limiter.admit(IpAddr::from([10, 0, 0, 2]), 2, t0).is_ok());
        assert!(limiter.admit(a, 2, t0 + GuestLimiter::WINDOW).is_ok());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let b: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(client_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }
}
