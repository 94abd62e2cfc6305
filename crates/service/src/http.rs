//! The HTTP/JSON API (docs/service.md#api): routes, parameter validation, JSON errors, metrics
//! and rate limiting middleware, hot reload; the connections themselves, with limits on how
//! long and how much a client may send, and a shutdown that does not wait on clients.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use musicrec_config::{RateLimitStore, Secret, ServiceConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::blend::{Pick, Source, tagged};
use crate::catalogue::{Fields, Track};
use crate::error::ServiceError;
use crate::event_log::EventLog;
use crate::events::{EventStore, MemoryEvents, RedisEvents};
use crate::limits::{Endpoint, Limits, MemoryLimiter, RateLimiter, RedisLimiter, Scope};
use crate::metrics::{FoldInCacheCounts, Metrics, Served};
use crate::model::ServingModel;
use crate::redis_link::RedisLink;

/// What a server needs: its configuration and the artifact set to serve.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: ServiceConfig,
    pub artifacts: musicrec_artifacts::Artifacts,
}

/// A loaded artifact set, when it was loaded and how long that took.
pub struct Loaded {
    pub model: ServingModel,
    pub loaded_at_unix: u64,
    pub load_seconds: f64,
}

pub struct AppState {
    settings: Settings,
    pub(crate) loaded: ArcSwap<Loaded>,
    events: EventStore,
    event_log: EventLog,
    redis: Option<Arc<RedisLink>>,
    pub metrics: Arc<Metrics>,
    limits: Limits,
    reloading: tokio::sync::Mutex<()>,
    last_reload_error: ArcSwapOption<String>,
}

async fn load(settings: &Settings) -> Result<Loaded, ServiceError> {
    let (artifacts, config) = (settings.artifacts.clone(), settings.config.clone());
    let started = Instant::now();
    let model = tokio::task::spawn_blocking(move || {
        // The version `CURRENT` names now, so a reload follows a new publication or a rollback.
        let current = artifacts
            .current()
            .map_err(|e| ServiceError::Artifacts { dir: artifacts.location(), reason: e.to_string() })?;
        ServingModel::load(&current, &config)
    })
    .await
    .map_err(|e| ServiceError::Artifacts { dir: settings.artifacts.location(), reason: e.to_string() })??;
    let load_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        version = model.version,
        users_with_offline = model.offline.keys_with_lists(),
        tracks = model.items.len(),
        seconds = format!("{load_seconds:.2}"),
        "artifacts loaded"
    );
    let loaded_at_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(Loaded { model, loaded_at_unix, load_seconds })
}

impl AppState {
    /// Loads the artifact set again and swaps it in; requests in flight keep the set they
    /// started with. A set that fails to load is refused and the current one stays.
    pub async fn reload(&self) -> Result<String, ServiceError> {
        let _one_at_a_time = self.reloading.lock().await;
        match load(&self.settings).await {
            Ok(loaded) => {
                let version = loaded.model.version.clone();
                self.loaded.store(Arc::new(loaded));
                self.last_reload_error.store(None);
                self.metrics.reloads_ok.inc();
                Ok(version)
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the loaded artifacts stay");
                self.last_reload_error.store(Some(Arc::new(e.to_string())));
                self.metrics.reloads_refused.inc();
                Err(e)
            }
        }
    }
}

/// A bound, loaded server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Loads the artifacts, connects the events store and binds `addr`.
    pub async fn start(settings: Settings, addr: SocketAddr) -> Result<Self, ServiceError> {
        let loaded = load(&settings).await?;
        let c = &settings.config;
        let redis = match &c.redis_url {
            Some(url) => Some(
                RedisLink::connect(
                    url,
                    Duration::from_millis(c.redis_timeout_ms),
                    Duration::from_millis(c.redis_cooldown_ms),
                )
                .await?,
            ),
            None => None,
        };
        let events = match &redis {
            None => EventStore::Memory(MemoryEvents::new(c.events_per_user, c.events_max_users)),
            Some(link) => EventStore::Redis(RedisEvents::new(
                link.clone(),
                &c.redis_key_prefix,
                c.events_per_user,
                c.events_ttl_seconds,
            )),
        };
        let event_log = EventLog::open(&c.event_log, redis.as_ref(), &c.redis_key_prefix)?;
        let metrics = Arc::new(Metrics::default());
        let limits = match (c.rate_limits.store, &redis) {
            (RateLimitStore::Redis, Some(link)) => {
                Limits::Redis(RedisLimiter::new(link.clone(), &c.redis_key_prefix, &c.rate_limits, metrics.clone()))
            }
            (RateLimitStore::Redis, None) => {
                return Err(ServiceError::Redis {
                    url: "null".into(),
                    reason: "service.rate_limits.store `redis` needs a redis:// URL".into(),
                });
            }
            (RateLimitStore::Memory, _) => Limits::Memory(MemoryLimiter::new(&c.rate_limits)),
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { addr, source })?;
        let state = Arc::new(AppState {
            settings,
            loaded: ArcSwap::from_pointee(loaded),
            events,
            event_log,
            redis,
            metrics,
            limits,
            reloading: tokio::sync::Mutex::new(()),
            last_reload_error: ArcSwapOption::empty(),
        });
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets the requests in flight
    /// finish and closes idle connections, for at most `service.shutdown_grace_ms`.
    ///
    /// Each connection is served by hyper directly (not `axum::serve`) so that a client cannot
    /// hold it: its request heads must arrive within `service.header_read_timeout_ms` (also
    /// the keep-alive idle timeout), and a head may not outgrow `MAX_HEAD_BYTES`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let state = self.state.clone();
        let housekeeping = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                state.limits.forget_idle_clients();
            }
        });
        let config = &self.state.settings.config;
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
            .max_buf_size(musicrec_config::MAX_HEAD_BYTES);
        let app = TowerToHyperService::new(router(self.state));
        let (closing, _) = tokio::sync::watch::channel(());
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while connections.try_join_next().is_some() {}
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, say: waiting lets closing connections (the
                        // header timeout closes the slow ones) free some, without spinning.
                        tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            // Small JSON answers on keep-alive connections: without NODELAY a response can
            // wait on Nagle's algorithm for the client's delayed ACK.
            let _ = tcp.set_nodelay(true);
            let app = app.clone();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.call(request)
            });
            let connection = http.serve_connection(TokioIo::new(tcp), service);
            let mut closing = closing.subscribe();
            connections.spawn(async move {
                let mut connection = std::pin::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = closing.changed() => {}
                }
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        drop(self.listener);
        let _ = closing.send(());
        let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "still open after service.shutdown_grace_ms; dropping them"
            );
            connections.abort_all();
        }
        housekeeping.abort();
    }
}

/// Pause after a failed accept before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The rate-limited API: each handler registered in the router and, from its `utoipa::path`,
/// in the OpenAPI document at once.
pub(crate) fn api_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(recommendations))
        .routes(routes!(get_events, post_event))
        .routes(routes!(similar))
        .routes(routes!(popular))
        .routes(routes!(crate::web::random_user))
}

/// The operator's endpoints, not rate limited; documented the same way.
pub(crate) fn operator_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
        .routes(routes!(reload))
}

fn router(state: Arc<AppState>) -> Router {
    let api = api_routes().route_layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    let (app, _) = api.merge(operator_routes()).split_for_parts();
    app.merge(crate::web::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; GET /openapi.json lists them") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here; GET /openapi.json lists the methods",
            )
        })
        .layer(DefaultBodyLimit::max(state.settings.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// A 4xx/5xx answer with a JSON body naming the problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The body of every 4xx and 5xx answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, and where.
    pub error: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message, status: self.status.as_u16() })).into_response()
    }
}

/// A request's query parameters, checked against the names an endpoint takes.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Result<Query<Vec<(String, String)>>, QueryRejection>, allowed: &[&str]) -> Result<Self, ApiError> {
        let Query(pairs) = query.map_err(|e| ApiError::bad(e.body_text()))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad(format!(
                    "unknown parameter `{name}`; this endpoint takes {}",
                    allowed.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad(format!("parameter `{name}` is given more than once")));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn id(&self, name: &str) -> Result<i64, ApiError> {
        let raw = self.get(name).ok_or_else(|| ApiError::bad(format!("missing parameter `{name}` (an integer id)")))?;
        raw.trim().parse().map_err(|_| ApiError::bad(format!("parameter `{name}`: `{raw}` is not an integer id")))
    }

    /// `offset` in 0..=max, 0 when absent.
    fn offset(&self, max: usize) -> Result<usize, ApiError> {
        let Some(raw) = self.get("offset") else { return Ok(0) };
        match raw.trim().parse::<usize>() {
            Ok(offset) if offset <= max => Ok(offset),
            _ => Err(ApiError::bad(format!("parameter `offset`: `{raw}` is not a whole number in 0..={max}"))),
        }
    }

    /// `fields`: `ids` or `all` (the default).
    fn fields(&self) -> Result<Fields, ApiError> {
        let Some(raw) = self.get("fields") else { return Ok(Fields::All) };
        Fields::parse(raw.trim())
            .ok_or_else(|| ApiError::bad(format!("parameter `fields`: `{raw}` is not `ids` or `all`")))
    }

    /// `k` in 1..=max, `max` when absent.
    fn k(&self, max: usize) -> Result<usize, ApiError> {
        let Some(raw) = self.get("k") else { return Ok(max) };
        match raw.trim().parse::<usize>() {
            Ok(k) if (1..=max).contains(&k) => Ok(k),
            _ => Err(ApiError::bad(format!("parameter `k`: `{raw}` is not a whole number in 1..={max}"))),
        }
    }
}

/// The user an answered request was about, for the access log.
#[derive(Debug, Clone, Copy)]
struct AboutUser(i64);

/// `response` marked as about `user`.
fn about_user(mut response: Response, user: i64) -> Response {
    response.extensions_mut().insert(AboutUser(user));
    response
}

#[derive(Serialize, ToSchema)]
pub struct RecommendationsAnswer<'a> {
    pub user_id: i64,
    /// The served set's version: its ranking stage's run id.
    pub model_version: &'a str,
    /// The list position of the first recommendation.
    pub offset: usize,
    /// Best first.
    pub recommendations: Vec<Track<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct SimilarAnswer<'a> {
    pub track_id: i64,
    /// The asked track itself, without a source.
    pub track: Track<'a>,
    pub similar: Vec<Track<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct PopularAnswer<'a> {
    pub popular: Vec<Track<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct EventsAnswer<'a> {
    pub user_id: i64,
    /// The latest listens, newest first, without a source.
    pub events: Vec<Track<'a>>,
}

impl AppState {
    /// The user's latest listens as dense items, newest first; empty when the store fails
    /// (counted), so recommendations are still served.
    async fn recent(&self, model: &ServingModel, user: i64) -> Vec<u32> {
        match self.events.latest(user, self.settings.config.events_per_user).await {
            Ok(tracks) => tracks.into_iter().filter_map(|t| model.items.encode(t)).collect(),
            Err(e) => {
                self.metrics.redis_errors.inc();
                tracing::warn!(error = e.0, "events store unavailable: serving without the online part");
                Vec::new()
            }
        }
    }
}

/// Blended recommendations: online (similar tracks of the latest listens, the fold-in) and
/// offline or popular, each with its source.
#[utoipa::path(get, path = "/recommendations", operation_id = "getRecommendations", tag = "recommendations",
    params(
        ("user_id" = i64, Query, description = "The user; one the run does not know is a new user"),
        ("k" = Option<u32>, Query, description = "List length, 1..=service.max_k (default service.max_k)"),
        ("offset" = Option<u32>, Query, description = "First list position, 0..=service.max_offset (default 0)"),
        ("fields" = Option<Fields>, Query, description = "all (default): names and score too; ids: track_id and source only"),
    ),
    responses(
        (status = 200, description = "A page of the user's recommendations", body = RecommendationsAnswer<'static>),
        (status = 400, description = "A bad or missing parameter", body = ErrorBody),
        (status = 429, description = "Over a rate limit; see Retry-After", body = ErrorBody),
    ))]
async fn recommendations(
    State(s): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let c = &s.settings.config;
    let p = Params::parse(query, &["user_id", "k", "offset", "fields"])?;
    let (user, k, offset, fields) = (p.id("user_id")?, p.k(c.max_k)?, p.offset(c.max_offset)?, p.fields()?);
    let loaded = s.loaded.load_full();
    let model = &loaded.model;
    let recent = s.recent(model, user).await;
    let picks = model.recommend(user, &recent, offset + k);
    let page = picks.get(offset..).unwrap_or_default();
    page.iter().for_each(|p| s.metrics.recommended(p.source));
    let answer = RecommendationsAnswer {
        user_id: user,
        model_version: &model.version,
        offset,
        recommendations: model.tracks(page, fields),
    };
    Ok(about_user(Json(answer).into_response(), user))
}

/// The similar tracks of a track, the similarity sources round-robin.
#[utoipa::path(get, path = "/similar", operation_id = "getSimilar", tag = "recommendations",
    params(
        ("track_id" = i64, Query, description = "The track"),
        ("k" = Option<u32>, Query, description = "List length, 1..=service.max_k (default service.max_k)"),
        ("fields" = Option<Fields>, Query, description = "all (default): names and score too; ids: track_id and source only"),
    ),
    responses(
        (status = 200, description = "The track and its similar tracks", body = SimilarAnswer<'static>),
        (status = 400, description = "A bad or missing parameter", body = ErrorBody),
        (status = 429, description = "Over a rate limit; see Retry-After", body = ErrorBody),
        (status = 404, description = "The track is not in the catalogue", body = ErrorBody),
    ))]
async fn similar(
    State(s): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = Params::parse(query, &["track_id", "k", "fields"])?;
    let (track, k, fields) = (p.id("track_id")?, p.k(s.settings.config.max_k)?, p.fields()?);
    let loaded = s.loaded.load_full();
    let model = &loaded.model;
    let item = model
        .items
        .encode(track)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("track_id {track} is not in the catalogue")))?;
    let answer = SimilarAnswer {
        track_id: track,
        track: model.track(item, None, None, fields),
        similar: model.tracks(&model.similar_to(item, k), fields),
    };
    Ok(Json(answer).into_response())
}

/// The most popular tracks.
#[utoipa::path(get, path = "/popular", operation_id = "getPopular", tag = "recommendations",
    params(
        ("k" = Option<u32>, Query, description = "List length, 1..=service.max_k (default service.max_k)"),
        ("fields" = Option<Fields>, Query, description = "all (default): names and score too; ids: track_id and source only"),
    ),
    responses(
        (status = 200, description = "The popular tracks, most played first", body = PopularAnswer<'static>),
        (status = 400, description = "A bad or missing parameter", body = ErrorBody),
        (status = 429, description = "Over a rate limit; see Retry-After", body = ErrorBody),
    ))]
async fn popular(
    State(s): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = Params::parse(query, &["k", "fields"])?;
    let (k, fields) = (p.k(s.settings.config.max_k)?, p.fields()?);
    let loaded = s.loaded.load_full();
    let model = &loaded.model;
    let picks: Vec<Pick> = tagged(model.popular_list(), Source::Popular).take(k).collect();
    Ok(Json(PopularAnswer { popular: model.tracks(&picks, fields) }).into_response())
}

/// A listen.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    user_id: i64,
    track_id: i64,
}

fn store_unavailable(s: &AppState, reason: String) -> ApiError {
    s.metrics.redis_errors.inc();
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the events store is unavailable: {reason}"))
}

/// What an event body must be, for error messages.
const EVENT_SHAPE: &str = "a JSON object {\"user_id\": <integer>, \"track_id\": <integer>}";

/// Records a listen in the events store.
#[utoipa::path(post, path = "/events", operation_id = "postEvent", tag = "events",
    request_body(content = Event, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = Event),
        (status = 400, description = "Not JSON, or not a JSON object", body = ErrorBody),
        (status = 408, description = "The body did not arrive within service.body_read_timeout_ms", body = ErrorBody),
        (status = 413, description = "The body is over service.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A field missing, unknown or of the wrong type, or a track not in the catalogue", body = ErrorBody),
        (status = 429, description = "Over a rate limit; see Retry-After", body = ErrorBody),
        (status = 503, description = "The events store (Redis) or the event log is unavailable", body = ErrorBody),
    ))]
async fn post_event(State(s): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let within = s.settings.config.body_read_timeout_ms;
    let body =
        tokio::time::timeout(Duration::from_millis(within), Json::<serde_json::Value>::from_request(request, &()))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within service.body_read_timeout_ms ({within} ms)"),
                )
            })?;
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if !body.is_object() {
        return Err(ApiError::bad(format!("the body must be {EVENT_SHAPE}, not {}", json_kind(&body))));
    }
    let event: Event = serde_path_to_error::deserialize(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{}`: {}; expected {EVENT_SHAPE}", e.path(), e.inner()),
        )
    })?;
    if s.loaded.load().model.items.encode(event.track_id).is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("track_id {} is not in the catalogue", event.track_id),
        ));
    }
    // Durable first: a 201 means the event is in the log (a no-op when the log is off).
    s.event_log
        .append(event.user_id, event.track_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the event log is unavailable: {e}")))?;
    s.events.add(event.user_id, event.track_id).await.map_err(|e| store_unavailable(&s, e.0))?;
    s.metrics.events_stored.inc();
    let user = event.user_id;
    Ok(about_user((StatusCode::CREATED, Json(event)).into_response(), user))
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A user's latest listens, newest first.
#[utoipa::path(get, path = "/events", operation_id = "getEvents", tag = "events",
    params(
        ("user_id" = i64, Query, description = "The user"),
        ("k" = Option<u32>, Query, description = "How many, 1..=service.events_per_user (default that)"),
        ("fields" = Option<Fields>, Query, description = "all (default): names and score too; ids: track_id and source only"),
    ),
    responses(
        (status = 200, description = "The latest listens", body = EventsAnswer<'static>),
        (status = 400, description = "A bad or missing parameter", body = ErrorBody),
        (status = 429, description = "Over a rate limit; see Retry-After", body = ErrorBody),
        (status = 503, description = "The events store (Redis) is unavailable", body = ErrorBody),
    ))]
async fn get_events(
    State(s): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = Params::parse(query, &["user_id", "k", "fields"])?;
    let (user, k, fields) = (p.id("user_id")?, p.k(s.settings.config.events_per_user)?, p.fields()?);
    let tracks = s.events.latest(user, k).await.map_err(|e| store_unavailable(&s, e.0))?;
    let loaded = s.loaded.load_full();
    let model = &loaded.model;
    let events = tracks
        .into_iter()
        .map(|track_id| match model.items.encode(track_id) {
            Some(item) => model.track(item, None, None, fields),
            // Stored under an earlier artifact set whose catalogue had the track.
            None => Track { track_id, source: None, about: None },
        })
        .collect();
    Ok(about_user(Json(EventsAnswer { user_id: user, events }).into_response(), user))
}

/// Liveness and what is served.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    pub model_version: String,
    /// The run id of every loaded stage.
    pub stages: BTreeMap<String, String>,
    pub loaded_at_unix: u64,
    pub users_with_offline: usize,
    pub tracks: usize,
    pub similarity_sources: Vec<&'static str>,
    pub fold_in: bool,
    /// `memory` or `redis`.
    pub events_store: &'static str,
    /// Why the last reload was refused; null after a good one.
    pub last_reload_error: Option<String>,
    /// The paging limits of `GET /recommendations` (service.max_k, service.max_offset), so a
    /// client knows how far it can page.
    pub max_k: usize,
    pub max_offset: usize,
}

/// Liveness and the loaded model version (run id).
#[utoipa::path(get, path = "/health", operation_id = "getHealth", tag = "operations",
    responses((status = 200, description = "Serving", body = Health)))]
async fn health(State(s): State<Arc<AppState>>) -> Response {
    let loaded = s.loaded.load_full();
    let m = &loaded.model;
    Json(Health {
        status: "ok",
        model_version: m.version.clone(),
        stages: m.stages.clone(),
        loaded_at_unix: loaded.loaded_at_unix,
        users_with_offline: m.offline.keys_with_lists(),
        tracks: m.items.len(),
        similarity_sources: m.similar.iter().map(|(s, _)| s.as_str()).collect(),
        fold_in: m.fold_in.is_some(),
        events_store: s.events.kind(),
        last_reload_error: s.last_reload_error.load_full().as_deref().cloned(),
        max_k: s.settings.config.max_k,
        max_offset: s.settings.config.max_offset,
    })
    .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "getOpenApi", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json")))]
async fn openapi_document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::json()).into_response()
}

/// Prometheus metrics (docs/service.md#metrics).
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "operations",
    responses((status = 200, description = "The Prometheus text exposition format, version 0.0.4", body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let loaded = s.loaded.load();
    let m = &loaded.model;
    let served = Served {
        run_id: m.version.clone(),
        trained_at_unix: m.trained_at_unix,
        loaded_at_unix: loaded.loaded_at_unix as f64,
        load_seconds: loaded.load_seconds,
        fold_in_cache: FoldInCacheCounts {
            hits: m.fold_in_cache.hits.load(Ordering::Relaxed),
            misses: m.fold_in_cache.misses.load(Ordering::Relaxed),
        },
        events_store: match &s.events {
            EventStore::Memory(store) => Some((store.users(), store.evicted())),
            EventStore::Redis(_) => None,
        },
        redis_circuit: s.redis.as_ref().map(|link| (link.breaker_opened(), link.skipped())),
    };
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], s.metrics.render(served)).into_response()
}

/// `POST /admin/reload` needs `Authorization: Bearer <service.admin_token>`; without a
/// configured token the endpoint is disabled (403), so an unprotected deployment cannot be
/// made to reload by anyone who reaches it.
fn authorize(token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "POST /admin/reload is disabled: no service.admin_token is configured \
             (set MUSICREC__SERVICE__ADMIN_TOKEN); SIGHUP still reloads",
        ));
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer <admin token>` header")),
        Some(given) if !same_secret(given.trim().as_bytes(), token.expose().as_bytes()) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token"))
        }
        Some(_) => Ok(()),
    }
}

/// Compares in time independent of where the inputs differ and of their lengths: both are
/// hashed to 32 bytes first, then every byte pair is compared.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    let difference = a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// What a reload swapped.
#[derive(Serialize, ToSchema)]
pub struct Reloaded {
    pub model_version: String,
    pub previous_version: String,
}

/// Loads the artifact set again and swaps it in atomically.
#[utoipa::path(post, path = "/admin/reload", operation_id = "reload", tag = "operations",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The new set is served", body = Reloaded),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "Disabled: no service.admin_token is configured", body = ErrorBody),
        (status = 422, description = "The set was refused; the old one stays", body = ErrorBody),
    ))]
async fn reload(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Err(refused) = authorize(s.settings.config.admin_token.as_ref(), &headers) {
        let mut response = refused.into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return Ok(response);
    }
    let previous = s.loaded.load().model.version.clone();
    match s.reload().await {
        Ok(version) => Ok(Json(Reloaded { model_version: version, previous_version: previous }).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, still serving {previous}: {e}"),
        )),
    }
}

/// Records every request's endpoint, status and latency, and logs it (`service.access_log`).
async fn track(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = Metrics::endpoint_index(request.uri().path());
    let access = s.settings.config.access_log.then(|| {
        let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        (request.method().clone(), request.uri().path().to_string(), client)
    });
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    s.metrics.record_request(endpoint, response.status().as_u16(), elapsed);
    if let Some((method, path, client)) = access {
        let user_id = response.extensions().get::<AboutUser>().map(|u| u.0);
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %method,
            path,
            status = response.status().as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1e3,
            client = client.map(|c| c.to_string()),
            user_id,
            "request"
        );
    }
    response
}

/// The `tracing` target of the access log lines, so a filter can keep or drop them alone.
pub const ACCESS_LOG_TARGET: &str = "musicrec::access";

/// Refuses, before routing and before reading any body, a request whose target, headers or
/// declared body length are over the configured limits.
async fn guard(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let c = &s.settings.config;
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > c.max_uri_bytes {
        let message = format!("the request target is {target} bytes, over service.max_uri_bytes ({})", c.max_uri_bytes);
        return ApiError::new(StatusCode::URI_TOO_LONG, message).into_response();
    }
    // As sent: `name: value\r\n`.
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers > c.max_header_bytes {
        let message =
            format!("the headers are {headers} bytes, over service.max_header_bytes ({})", c.max_header_bytes);
        return ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, message).into_response();
    }
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&n| n > c.max_body_bytes as u64) {
        let message = format!(
            "the body of {length} bytes is over the length limit service.max_body_bytes ({})",
            c.max_body_bytes
        );
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    next.run(request).await
}

async fn rate_limit(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(endpoint) = Endpoint::of_path(request.uri().path()) else { return next.run(request).await };
    let client =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    match s.limits.check(endpoint, client).await {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            s.metrics.rate_limited(endpoint, refusal.scope);
            let what = match refusal.scope {
                Scope::Global => "the service's",
                Scope::Client => "this client's",
            };
            let seconds = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("over {what} request-rate limit for {}; retry in {seconds} s", endpoint.path()),
            )
            .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}
