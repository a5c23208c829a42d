//! Hot reload, as the supervisor drives it: requests (SIGHUP, `POST /reload` on the metrics
//! endpoint, `edge-router reload`, or a change of the config file seen by the watch) are queued
//! and served one at a time. Each reads the config file again, prepares it off the supervisor's
//! thread (plugins may take seconds to compile), applies it to the running pipeline and waits
//! for the stage thread to switch. A config that does not validate, or that changes what cannot
//! change while running, is refused with every problem logged; the old pipeline keeps running.
//! Requests that arrive while one is being served are answered together by the next one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::topology::build::{Prepared, ReloadRefused, Running};

/// Where the answer to a reload request goes: `Ok` with a summary of what changed, or `Err`
/// with why nothing changed.
pub type Reply = oneshot::Sender<Result<String, String>>;

/// One request to reload.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Who asked: `None` for SIGHUP and the file watch (the outcome is only logged).
    pub reply: Option<Reply>,
}

/// Changes a freshly read config the way the command line changed the first one (e.g.
/// `--metrics` overriding `[metrics]`), so that they compare alike.
pub type Adjust = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// What a reload is doing.
enum State {
    Idle,
    /// Reading the file and preparing it on a blocking thread.
    Preparing(JoinHandle<Result<Prepared, ReloadRefused>>, Vec<Reply>),
    /// Applied; waiting for the stage thread to switch.
    Switching(oneshot::Receiver<Duration>, String, Vec<Reply>),
}

/// A finished step of the reload under way (see [`Reloader::next_step`]).
pub enum Step {
    /// The new config was read and prepared (or refused).
    Prepared(Result<Box<Prepared>, ReloadRefused>),
    /// The stage thread runs the new config, after pausing for this long (`None`: it ended
    /// before switching).
    Switched(Option<Duration>),
}

/// Serves reload requests for the supervisor.
pub struct Reloader {
    path: Option<PathBuf>,
    adjust: Adjust,
    waiting: Vec<Option<Reply>>,
    state: State,
    /// The config file's modification time when last read, for the watch.
    seen: Option<SystemTime>,
}

impl Reloader {
    /// Serves reloads of the config file at `path` (`None`: the pipeline came from the command
    /// line or the embedded default, and every request is refused).
    pub fn new(path: Option<PathBuf>, adjust: Adjust) -> Reloader {
        let seen = path.as_deref().and_then(modified);
        Reloader {
            path,
            adjust,
            waiting: Vec::new(),
            state: State::Idle,
            seen,
        }
    }

    /// True when there is a config file to reload.
    pub fn can_reload(&self) -> bool {
        self.path.is_some()
    }

    /// Queues a request.
    pub fn request(&mut self, r: ReloadRequest) {
        self.waiting.push(r.reply);
    }

    /// Queues a request if the config file's modification time changed since it was last read
    /// (the file watch calls this every interval).
    pub fn check_file(&mut self) {
        let Some(path) = &self.path else { return };
        let now = modified(path);
        if now.is_some() && now != self.seen {
            tracing::info!("config file {} changed: reloading", path.display());
            self.seen = now;
            self.waiting.push(None);
        }
    }

    /// True when requests wait to be served.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// True while a reload is being prepared or switched.
    pub fn busy(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Starts serving the queued requests (all of them with one reload) if none is under way.
    pub fn start_next(&mut self, running: &Running) {
        if self.busy() || self.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        let replies: Vec<Reply> = waiting.into_iter().flatten().collect();
        let Some(path) = self.path.clone() else {
            refuse(
                replies,
                "nothing to reload: the router was not started with a config file (-c FILE)",
            );
            return;
        };
        let Some(base) = running.reload_base() else {
            refuse(replies, "this pipeline cannot be reloaded");
            return;
        };
        tracing::info!("reloading {}", path.display());
        self.seen = modified(&path);
        let adjust = self.adjust.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut config = config::load_file(&path).map_err(|errors| {
                ReloadRefused(errors.0.iter().map(ToString::to_string).collect())
            })?;
            adjust(&mut config);
            base.prepare(config)
        });
        self.state = State::Preparing(job, replies);
    }

    /// Waits for the step under way to finish; never returns while idle.
    pub async fn next_step(&mut self) -> Step {
        match &mut self.state {
            State::Idle => std::future::pending().await,
            State::Preparing(job, _) => Step::Prepared(match job.await {
                Ok(r) => r.map(Box::new),
                Err(e) => Err(ReloadRefused(vec![format!(
                    "internal error while preparing: {e}"
                )])),
            }),
            State::Switching(switched, _, _) => Step::Switched(switched.await.ok()),
        }
    }

    /// Carries a finished step on: applies a prepared config, or reports the outcome.
    pub fn handle(&mut self, step: Step, running: &mut Running) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (step, state) {
            (Step::Prepared(Ok(prepared)), State::Preparing(_, replies)) => {
                for w in &prepared.warnings {
                    tracing::warn!("reload: {w}");
                }
                match running.apply(*prepared) {
                    Ok(applied) => {
                        self.state = State::Switching(applied.switched, applied.summary, replies);
                    }
                    Err(refused) => refuse_all(replies, &refused),
                }
            }
            (Step::Prepared(Err(refused)), State::Preparing(_, replies)) => {
                refuse_all(replies, &refused);
            }
            (Step::Switched(Some(pause)), State::Switching(_, summary, replies)) => {
                let pause_ms = pause.as_secs_f64() * 1000.0;
                tracing::info!(pause_ms, "reloaded: {summary}");
                let answer = format!("reloaded: {summary}; pause {pause_ms:.1} ms");
                for r in replies {
                    let _ = r.send(Ok(answer.clone()));
                }
            }
            (Step::Switched(None), State::Switching(_, _, replies)) => refuse(
                replies,
                "the stage thread ended before switching (the pipeline is stopping)",
            ),
            (_, state) => self.state = state,
        }
    }

    /// Answers every queued request with an error (the router is stopping).
    pub fn refuse_waiting(&mut self, why: &str) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        refuse(waiting.into_iter().flatten().collect(), why);
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn refuse(replies: Vec<Reply>, why: &str) {
    tracing::error!("reload refused: {why}");
    for r in replies {
        let _ = r.send(Err(why.to_owned()));
    }
}

fn refuse_all(replies: Vec<Reply>, refused: &ReloadRefused) {
    for p in &refused.0 {
        tracing::error!("reload refused: {p}");
    }
    tracing::error!("reload refused; the running pipeline is unchanged");
    let why = refused.0.join("\n");
    for r in replies {
        let _ = r.send(Err(why.clone()));
    }
}

/// `edge-router reload`: asks the router whose metrics endpoint is `address` to reload (with
/// its reload `token` as a bearer token), and
/// returns its answer: `Ok(summary)`, or `Err` with why nothing changed (or why it could not be
/// asked).
pub fn request(address: &str, token: Option<&str>) -> Result<String, String> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let (status, body) = crate::metrics::client::EndpointClient::new(address)?.call_with(
        hyper::Method::POST,
        "/reload",
        auth.as_deref(),
    )?;
    let url = format!("http://{address}/reload");
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{url} answered HTTP {status} with something not JSON: {e}"))?;
    if status.is_success() {
        Ok(answer["summary"].as_str().unwrap_or("reloaded").to_owned())
    } else {
        let errors: Vec<&str> = answer["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        Err(format!("HTTP {status}: {}", errors.join("\n")))
    }
}
