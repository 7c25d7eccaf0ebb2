//! The admin API (admin principal required; the caller checks it):
//!
//! - compute endpoints, the platform's routes and fields:
//!   `GET|POST /compute-endpoints`, `GET|PATCH|DELETE /compute-endpoints/{name}`,
//!   `GET|POST /compute-endpoints/{name}/assignments`,
//!   `DELETE /compute-endpoints/{name}/assignments/{id}`,
//!   `GET /compute-endpoints/{name}/health`;
//! - principals and policy, under `/admin`: `GET /admin/users`,
//!   `GET|PUT|DELETE /admin/users/{name}` (`PUT` body `{"is_admin"}`),
//!   `GET /admin/users/{name}/tokens`, `POST /admin/tokens`
//!   (`{"user", "token"?}`: the token is answered once, generated when not
//!   given), `POST /admin/tokens/revoke` (`{"token"}`), `GET /admin/groups`,
//!   `PUT|DELETE /admin/groups/{group}/members/{user}`,
//!   `GET|POST /admin/grants`, `DELETE /admin/grants/{id}`,
//!   `GET|POST /admin/row-filters`, `DELETE /admin/row-filters/{id}`,
//!   `GET|POST /admin/column-masks`, `DELETE /admin/column-masks/{id}`.
//!
//! Owns the mapping of store errors to statuses (400 invalid, 404, 409, 500).
//! Every write goes to the store, which installs the new snapshot before it
//! answers, so the next query on this gateway sees it (and other gateways
//! within their refresh interval). It never returns an endpoint's
//! `auth_token`, and never an API token except the one answer that creates it.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::store::history::{HistoryFilter, MAX_HISTORY_ROWS};

use super::app::App;
use super::http::{self as h, ApiError, Body};
use crate::store::{
    EndpointPatch, EndpointType, ErrorKind, NewAssignment, NewColumnMask, NewEndpoint, NewGrant,
    NewRowFilter, StoreError,
};

/// How long the live probe of `GET /compute-endpoints/{name}/health` waits.
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

fn store_error(e: StoreError) -> ApiError {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::Invalid => ApiError::bad_request(msg),
        ErrorKind::NotFound => ApiError::not_found(msg),
        ErrorKind::Conflict => ApiError::new(StatusCode::CONFLICT, "CONFLICT", msg),
        ErrorKind::Internal => {
            tracing::error!(error = %msg, "store failure");
            ApiError::internal(msg)
        }
    }
}

/// The query history's filter from a query string: `since` (Unix
/// milliseconds or RFC 3339), `outcome`, `limit` (1 to 1000, default 100),
/// and `user` where the caller may ask for others' (an admin).
pub fn history_filter(query: Option<&str>, any_user: bool) -> Result<HistoryFilter, ApiError> {
    let param = |name: &str| -> Option<String> {
        h::query_param(query, name).map(|v| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    };
    let since_ms = match param("since") {
        None => None,
        Some(v) => Some(match v.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => chrono::DateTime::parse_from_rfc3339(&v)
                .map_err(|_| {
                    ApiError::bad_request(
                        "since must be Unix milliseconds or an RFC 3339 time (2026-12-08T10:00:00Z)",
                    )
                })?
                .timestamp_millis(),
        }),
    };
    let outcome = param("outcome");
    if let Some(o) = &outcome {
        if !crate::query::audit::OUTCOMES.contains(&o.as_str()) {
            return Err(ApiError::bad_request(format!(
                "outcome must be one of {}",
                crate::query::audit::OUTCOMES.join(", ")
            )));
        }
    }
    let limit = match param("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_ROWS).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {MAX_HISTORY_ROWS}"))
            })?,
    };
    let user = match param("user") {
        Some(_) if !any_user => {
            return Err(ApiError::bad_request(
                "user: only an admin reads other users' queries (GET /admin/queries)",
            ))
        }
        u => u.map(|u| u.trim().to_lowercase()),
    };
    Ok(HistoryFilter {
        user,
        since_ms,
        outcome,
        limit,
    })
}

fn ok<T: Serialize>(v: Result<T, StoreError>) -> Result<Response<Body>, ApiError> {
    v.map(|v| h::json_response(StatusCode::OK, &v))
        .map_err(store_error)
}

fn created<T: Serialize>(v: Result<T, StoreError>) -> Result<Response<Body>, ApiError> {
    v.map(|v| h::json_response(StatusCode::CREATED, &v))
        .map_err(store_error)
}

fn deleted(v: Result<(), StoreError>) -> Result<Response<Body>, ApiError> {
    v.map(|()| h::json_response(StatusCode::OK, &serde_json::json!({"deleted": true})))
        .map_err(store_error)
}

fn id(s: &str) -> Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not an id")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    user: String,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeToken {
    token: String,
}

/// Dispatches an admin request (`segs`: the path's segments).
pub async fn route(
    app: &Arc<App>,
    req: Request<Incoming>,
    segs: &[&str],
    method: &Method,
) -> Result<Response<Body>, ApiError> {
    let s = &app.query.store;
    let r = match (segs, method) {
        (["compute-endpoints"], &Method::GET) => ok(s.list_endpoints().await),
        (["compute-endpoints"], &Method::POST) => {
            let b: NewEndpoint = app.body(req).await?;
            created(s.create_endpoint(b).await)
        }
        (["compute-endpoints", name], &Method::GET) => ok(s.get_endpoint(name).await),
        (["compute-endpoints", name], &Method::PATCH) => {
            let b: EndpointPatch = app.body(req).await?;
            let r = s.update_endpoint(name, b).await;
            // A new URL is another engine: read its tables again.
            app.query.catalogs.clear();
            ok(r)
        }
        (["compute-endpoints", name], &Method::DELETE) => deleted(s.delete_endpoint(name).await),
        (["compute-endpoints", name, "assignments"], &Method::GET) => {
            ok(s.list_assignments(name).await)
        }
        (["compute-endpoints", name, "assignments"], &Method::POST) => {
            let b: NewAssignment = app.body(req).await?;
            created(s.create_assignment(name, b).await)
        }
        (["compute-endpoints", name, "assignments", a], &Method::DELETE) => {
            deleted(s.delete_assignment(name, id(a)?).await)
        }
        (["compute-endpoints", name, "health"], &Method::GET) => endpoint_health(app, name).await,
        (["admin", "queries"], &Method::GET) => {
            let f = history_filter(req.uri().query(), true)?;
            ok(s.history(f).await)
        }
        (["admin", "users"], &Method::GET) => ok(s.list_users().await),
        (["admin", "users", name], &Method::GET) => ok(s.get_user(name).await),
        (["admin", "users", name], &Method::PUT) => {
            let b: UserBody = app.body(req).await?;
            ok(s.upsert_user(name, b.is_admin).await)
        }
        (["admin", "users", name], &Method::DELETE) => deleted(s.delete_user(name).await),
        (["admin", "users", name, "tokens"], &Method::GET) => ok(s.list_tokens(name).await),
        (["admin", "tokens"], &Method::POST) => {
            let b: NewToken = app.body(req).await?;
            let token = b.token.unwrap_or_else(|| {
                format!(
                    "gw_{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                )
            });
            let row = s.create_token(&b.user, &token).await.map_err(store_error)?;
            Ok(h::json_response(
                StatusCode::CREATED,
                &serde_json::json!({
                    "user": row.user,
                    "token": token,
                    "fingerprint": row.fingerprint,
                    "created_at": row.created_at,
                }),
            ))
        }
        (["admin", "tokens", "revoke"], &Method::POST) => {
            let b: RevokeToken = app.body(req).await?;
            deleted(s.revoke_token(&b.token).await)
        }
        (["admin", "groups"], &Method::GET) => ok(s.list_groups().await),
        (["admin", "groups", g, "members", u], &Method::PUT) => ok(s
            .add_member(g, u)
            .await
            .map(|()| serde_json::json!({"group": g, "user": u}))),
        (["admin", "groups", g, "members", u], &Method::DELETE) => {
            deleted(s.remove_member(g, u).await)
        }
        (["admin", "grants"], &Method::GET) => ok(s.list_grants().await),
        (["admin", "grants"], &Method::POST) => {
            let b: NewGrant = app.body(req).await?;
            created(s.create_grant(b).await)
        }
        (["admin", "grants", g], &Method::DELETE) => deleted(s.delete_grant(id(g)?).await),
        (["admin", "row-filters"], &Method::GET) => ok(s.list_row_filters().await),
        (["admin", "row-filters"], &Method::POST) => {
            let b: NewRowFilter = app.body(req).await?;
            created(s.create_row_filter(b).await)
        }
        (["admin", "row-filters", f], &Method::DELETE) => {
            deleted(s.delete_row_filter(id(f)?).await)
        }
        (["admin", "column-masks"], &Method::GET) => ok(s.list_column_masks().await),
        (["admin", "column-masks"], &Method::POST) => {
            let b: NewColumnMask = app.body(req).await?;
            created(s.create_column_mask(b).await)
        }
        (["admin", "column-masks", m], &Method::DELETE) => {
            deleted(s.delete_column_mask(id(m)?).await)
        }
        _ => Err(ApiError::not_found(format!(
            "no admin route {method} /{}",
            segs.join("/")
        ))),
    };
    if *method != Method::GET {
        if let Ok(resp) = &r {
            tracing::info!(target: "admin", method = %method, path = %format!("/{}", segs.join("/")), status = resp.status().as_u16(), "admin change");
        }
    }
    r
}

/// The resolver's view of the endpoint, and a live probe of its `/health`.
async fn endpoint_health(app: &Arc<App>, name: &str) -> Result<Response<Body>, ApiError> {
    let row = app
        .query
        .store
        .get_endpoint(name)
        .await
        .map_err(store_error)?;
    if row.kind == EndpointType::Local {
        return Ok(h::json_response(
            StatusCode::OK,
            &serde_json::json!({"name": row.name, "type": row.kind, "status": row.status, "up": true, "detail": "local compute (this gateway's DuckDB)"}),
        ));
    }
    app.query.resolver.reload_if_changed();
    let known = app.query.resolver.health().get(&row.name);
    let probe = match app.query.resolver.client(&row.name) {
        None => serde_json::json!({"error": "no client for this endpoint (not loaded yet)"}),
        Some(c) => match c.health(HEALTH_PROBE_TIMEOUT).await {
            Ok(h) => serde_json::to_value(h).unwrap_or_default(),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        },
    };
    Ok(h::json_response(
        StatusCode::OK,
        &serde_json::json!({
            "name": row.name,
            "type": row.kind,
            "status": row.status,
            "up": known.up,
            "suspect": known.suspect,
            "usable": known.usable(),
            "consecutive_failures": known.consecutive_failures,
            "consecutive_successes": known.consecutive_successes,
            "last_error": known.last_error,
            "last_health": known.last,
            "probe": probe,
        }),
    ))
}
