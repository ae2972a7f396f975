//! `bannin console`: a web console served on loopback by the operator's own CLI.
//!
//! # Design
//!
//! The console is a client of the collector's Operator API like every other
//! `bannin` command, holding the operator's certificate (as `kubectl proxy`
//! does): the collector's attack surface does not grow, and every action is the
//! operator's — checked by the collector against their role and written to the
//! action log under their name. The role shown by [`v1::WhoAmIResponse`] only
//! decides which buttons a page offers.
//!
//! Pages are rendered on the server with [`maud`], which escapes every value it
//! splices: file names, command lines, hostnames and summaries come from
//! agents and are shown as text, never as markup. The one script
//! (`assets/console.js`) builds live rows with `textContent`. A
//! Content-Security-Policy without `unsafe-inline` backs both. Every asset is
//! compiled into the binary; nothing is fetched from elsewhere.
//!
//! Access: [`auth`] (one-time login token → HttpOnly SameSite=Strict cookie,
//! CSRF token per session, `Host` header check).

mod auth;
mod pages;
mod view;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bannin_proto::v1;

use crate::cmd::Client;

/// `bannin console` options.
#[derive(clap::Args, Debug)]
pub(crate) struct ConsoleArgs {
    /// Address to serve on. Loopback by default; port 0 picks a free one.
    /// Another address needs --allow-remote (the console speaks plain HTTP).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve on a non-loopback --listen address (plain HTTP: put TLS in front).
    #[arg(long)]
    allow_remote: bool,
}

/// Who the console acts as.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    /// The operator's name (from the certificate, as the collector sees it).
    pub name: String,
    /// viewer, responder or admin.
    pub role: Role,
    /// The collector's version.
    pub collector_version: String,
}

/// An operator's role, in order of power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// Reads everything.
    Viewer,
    /// Also acts on hosts, findings and incidents.
    Responder,
    /// Also manages operators, tokens, evidence export.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Self {
        match s {
            "admin" => Role::Admin,
            "responder" => Role::Responder,
            _ => Role::Viewer,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// What every handler shares.
pub(crate) struct Console {
    client: Client,
    operator: Operator,
    auth: auth::Auth,
}

/// The shared state, as handlers receive it.
pub(crate) type Shared = Arc<Console>;

impl Console {
    /// A client of the collector (channels are cheap clones of one connection).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Writes a refusal the console made itself to the collector's action log
    /// (as this console's operator; repeats are coalesced there). Best effort:
    /// the refusal stands whether or not the collector answers within 2 s.
    pub(crate) async fn record_refusal(&self, method: &str, path: &str, reason: &str) {
        let mut client = self.client();
        let call = client.record_console_refusal(bannin_proto::v1::ConsoleRefusal {
            method: method.to_owned(),
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
        match tokio::time::timeout(std::time::Duration::from_secs(2), call).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::warn!(%path, error = %status.message(), "console refusal not written to the action log");
            }
            Err(_) => {
                tracing::warn!(%path, "console refusal not written to the action log: no answer within 2 s");
            }
        }
    }
}

/// The Content-Security-Policy on every response: scripts and styles only from
/// this console's own files, no inline script, nothing from elsewhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A console bound to its address, not yet serving.
pub(crate) struct Bound {
    console: Shared,
    listener: tokio::net::TcpListener,
    /// Where it listens.
    pub local: SocketAddr,
}

impl Bound {
    /// The current one-time login URL.
    pub(crate) fn login_url(&self) -> anyhow::Result<String> {
        let token = self
            .console
            .auth
            .login_token()
            .context("the login token was used already")?;
        Ok(format!("http://{}/login?token={token}", self.local))
    }

    /// Serves until `shutdown` completes.
    pub(crate) async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(listen = %self.local, operator = %self.console.operator.name, "console serving");
        axum::serve(self.listener, router(self.console))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving the console")
    }
}

/// Asks the collector who this operator is and binds `listen` (loopback unless
/// `allow_remote`).
pub(crate) async fn bind(
    listen: SocketAddr,
    allow_remote: bool,
    mut client: Client,
) -> anyhow::Result<Bound> {
    if !listen.ip().is_loopback() && !allow_remote {
        anyhow::bail!(
            "--listen {listen} is not a loopback address; the console speaks plain HTTP, so serving it elsewhere needs --allow-remote (and TLS in front of it)"
        );
    }
    let me = client
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("asking the collector who this operator is")?
        .into_inner();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let port = local.port();
    let mut hosts = vec![local.to_string(), format!("localhost:{port}")];
    if local.ip().is_loopback() {
        hosts.push(format!("127.0.0.1:{port}"));
        hosts.push(format!("[::1]:{port}"));
    }
    let console = Arc::new(Console {
        client,
        operator: Operator {
            name: me.operator,
            role: Role::parse(&me.role),
            collector_version: me.collector_version,
        },
        auth: auth::Auth::new(hosts),
    });
    Ok(Bound {
        console,
        listener,
        local,
    })
}

/// Runs the console until Ctrl-C.
pub(crate) async fn run(args: ConsoleArgs, client: Client, json: bool) -> anyhow::Result<ExitCode> {
    let bound = bind(args.listen, args.allow_remote, client).await?;
    let url = bound.login_url()?;
    let local = bound.local;
    let operator = bound.console.operator.clone();
    if json {
        crate::output::print_json(&serde_json::json!({
            "url": url,
            "listen": local.to_string(),
            "operator": operator.name,
            "role": operator.role.as_str(),
        }))?;
    } else {
        eprintln!(
            "Bannin console for {} ({}) on http://{local}/",
            operator.name,
            operator.role.as_str()
        );
        eprintln!("Open this one-time login URL in a browser on this machine:");
        crate::say!("{url}");
        eprintln!(
            "Press Enter for another one-time URL (a second browser); Ctrl-C stops the console."
        );
    }
    // Each line on stdin prints a fresh one-time login URL (the last one stops working).
    let renew = bound.console.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line.is_err() {
                return;
            }
            let token = renew.auth.renew_login();
            crate::say!("http://{local}/login?token={token}");
        }
    });
    bound
        .serve(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Every route, behind the access checks.
pub(crate) fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login))
        .route("/logout", post(pages::logout))
        .route("/static/console.css", get(pages::css))
        .route("/static/console.js", get(pages::js))
        .route("/static/favicon.svg", get(pages::favicon))
        .route("/favicon.ico", get(pages::favicon))
        .route("/findings", get(pages::findings))
        .route("/findings/stream", get(pages::findings_stream))
        .route("/findings/bulk", post(pages::bulk_state))
        .route("/findings/{id}", get(pages::finding))
        .route("/findings/{id}/state", post(pages::finding_state))
        .route("/hosts", get(pages::hosts))
        .route("/hosts/{id}", get(pages::host))
        .route("/hosts/{id}/triage", post(pages::triage))
        .route("/hosts/{id}/isolate", post(pages::isolate))
        .route("/hosts/{id}/release", post(pages::release))
        .route("/hosts/{id}/snapshot", post(pages::snapshot))
        .route("/hosts/{id}/capture", post(pages::capture))
        .route("/commands", get(pages::commands))
        .route("/commands/{id}", get(pages::command_page))
        .route("/api/commands/{id}", get(pages::command_json))
        .route(
            "/incidents",
            get(pages::incidents).post(pages::open_incident),
        )
        .route(
            "/incidents/{id}",
            get(pages::incident).post(pages::update_incident),
        )
        .route("/incidents/{id}/{kind}", get(pages::report))
        .route("/hunts", get(pages::hunts).post(pages::start_hunt))
        .route("/hunts/{id}", get(pages::hunt))
        .route("/hunts/{id}/stop", post(pages::stop_hunt))
        .route("/hunts/{id}/results.csv", get(pages::hunt_csv))
        .route("/api/hunts/{id}", get(pages::hunt_json))
        .route("/search", get(pages::search))
        .route("/evidence", get(pages::evidence))
        .route("/evidence/{id}", get(pages::evidence_item))
        .route("/evidence/{id}/verify", post(pages::verify_evidence))
        .route("/evidence/{id}/export", post(pages::export_evidence))
        .route("/actions", get(pages::actions))
        .route("/actions/verify", post(pages::verify_actions))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console)
}

/// A form body larger than this is refused (notes, reasons, file lists).
const MAX_FORM: usize = 256 * 1024;

/// The access checks and the security headers, around every request.
async fn guard(State(console): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = match check(&console, request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Host header, then (except for the login page and the static files) the
/// session, then (for changes) the CSRF token: from the `X-CSRF-Token` header,
/// or the form's `csrf` field.
async fn check(console: &Console, request: Request) -> Result<Request, Response> {
    let header_str = |request: &Request, name| {
        request
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    // Every refusal is also the operator's entry in the collector's action log.
    let refuse = |status: StatusCode, refusal: auth::Refusal| {
        let (path, method) = (path.clone(), method.clone());
        async move {
            tracing::warn!(path = %path, reason = %refusal, "console request refused");
            console
                .record_refusal(&method, &path, &refusal.to_string())
                .await;
            (status, view::refusal_page(&refusal.to_string())).into_response()
        }
    };
    if let Err(r) = console
        .auth
        .check_host(header_str(&request, header::HOST).as_deref())
    {
        return Err(refuse(StatusCode::MISDIRECTED_REQUEST, r).await);
    }
    if path == "/login" || path.starts_with("/static/") || path == "/favicon.ico" {
        return Ok(request);
    }
    let session = match console
        .auth
        .session(header_str(&request, header::COOKIE).as_deref())
    {
        Ok(s) => s,
        Err(r) => return Err(refuse(StatusCode::UNAUTHORIZED, r).await),
    };
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let mut request = request;
        request.extensions_mut().insert(session);
        return Ok(request);
    }
    let sent = header_str(&request, header::HeaderName::from_static("x-csrf-token"));
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            view::refusal_page("the form is larger than 256 KiB"),
        )
            .into_response());
    };
    let from_form = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    if let Err(r) = auth::check_csrf(&session, sent.as_deref().or(from_form.as_deref())) {
        return Err(refuse(StatusCode::FORBIDDEN, r).await);
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(session);
    Ok(request)
}
