//! The supervisor's sequencing, over real pipelines (a pipe read as stdin is read, file sinks in
//! a temporary directory) with the signals sent by the tests. Grace-period tests run on a
//! runtime with paused time: the clock jumps to the next timer whenever the runtime is idle, so
//! a grace period passes without being waited for.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::config::{self, Config};
use crate::reload::Adjust;
use crate::sources::stdin::StdinInput;
use crate::supervise::notify;
use crate::topology::build::{self, Observer};

/// How long a test waits for something it expects, at most (real time).
const LONG: Duration = Duration::from_secs(60);

/// A pipe: what is written to the `File` is read by the `StdinInput`, which sees end of input
/// once the `File` is dropped.
fn pipe() -> (StdinInput, std::fs::File) {
    let (r, w) = rustix::pipe::pipe().unwrap();
    (StdinInput::from_fd(r), std::fs::File::from(w))
}

/// A config: the stdin source, the sinks given (TOML), dead letters in `dir/dl.ndjson`.
fn config_text(dir: &Path, grace_ms: u64, sinks: &str) -> String {
    format!(
        r#"
[pipeline]
shutdown_grace_ms = {grace_ms}

[sources.in]
kind = "stdin"

{sinks}

[dead_letter]
path = "{}"
"#,
        dir.join("dl.ndjson").display()
    )
}

/// A file sink named `name` writing `path`.
fn file_sink(name: &str, path: &Path) -> String {
    format!(
        "[sinks.{name}]\nkind = \"file\"\npath = \"{}\"\n",
        path.display()
    )
}

fn parse(text: &str) -> Config {
    config::parse_str("test.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn no_adjust() -> Adjust {
    Arc::new(|_: &mut Config| {})
}

/// A supervisor of `config` (no config file: reloads are refused) and the senders of its
/// signals and reload requests.
fn supervisor(
    config: &Config,
    path: Option<PathBuf>,
) -> (
    Supervisor,
    mpsc::Sender<Signal>,
    mpsc::UnboundedSender<ReloadRequest>,
) {
    let (signal_tx, signals) = mpsc::channel(4);
    let (reload_tx, reloads) = mpsc::unbounded_channel();
    let s = Supervisor::new(
        signals,
        reloads,
        Reloader::new(path, no_adjust()),
        config.pipeline.shutdown_grace,
    );
    (s, signal_tx, reload_tx)
}

fn start(config: &Config, input: StdinInput, reloadable: bool) -> Running {
    build::start(config, Some(Box::new(input)), reloadable).unwrap()
}

/// Waits (real time, on a thread) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (real time, on the runtime) until `done` holds.
async fn wait_until_async(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn records_read(o: &Observer) -> u64 {
    o.report().counters.totals.read
}

fn has_queue(o: &Observer, name: &str) -> bool {
    o.report().queues.iter().any(|q| q.name == name)
}

/// Runs the supervisor to its end, failing the test instead of hanging.
async fn run_bounded(s: Supervisor, running: Running) -> Outcome {
    tokio::time::timeout(LONG, s.run(running))
        .await
        .expect("the supervisor ended")
}

/// A runtime whose clock stands still unless the runtime is idle.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A FIFO nobody reads yet: a file sink writing it blocks in `open` and holds its records.
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("out.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("running mkfifo");
    assert!(status.success());
    path
}

/// Reads `fifo` to its end on a thread (lets a blocked sink finish); the bytes come on the
/// channel.
fn drain(fifo: PathBuf) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(fifo).unwrap());
    });
    rx
}

fn numbered(n: usize) -> String {
    (0..n).map(|i| format!("record {i}\n")).collect()
}

/// A pipeline reading a pipe into a sink blocked on a FIFO, which has read `lines` records: they
/// are all in flight.
struct Blocked {
    dir: tempfile::TempDir,
    fifo: PathBuf,
    config: Config,
    running: Running,
    /// The pipe's write end, kept open: the source only stops because it was told to.
    _writer: std::fs::File,
}

fn blocked(lines: usize, grace_ms: u64, reloadable: bool) -> Blocked {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo(dir.path());
    let config = parse(&config_text(dir.path(), grace_ms, &file_sink("out", &fifo)));
    let (input, mut writer) = pipe();
    writer.write_all(numbered(lines).as_bytes()).unwrap();
    let running = start(&config, input, reloadable);
    let observer = running.observer();
    wait_until("the records to be read", || {
        records_read(&observer) == lines as u64
    });
    Blocked {
        dir,
        fifo,
        config,
        running,
        _writer: writer,
    }
}

#[tokio::test]
async fn a_first_signal_stops_reading_and_everything_read_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    // A network source too: the signal must stop it as well as the stdin source.
    let sinks = format!(
        "{}\n[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:0\"\n",
        file_sink("out", &out)
    );
    let config = parse(&config_text(dir.path(), 600_000, &sinks));
    let (input, mut writer) = pipe();
    // Three lines and the start of a fourth; the pipe stays open.
    writer.write_all(b"one\ntwo\nthree\nfou").unwrap();
    let running = start(&config, input, false);
    let (observer, shutdown) = (running.observer(), running.shutdown());
    let (s, signal_tx, _reload_tx) = supervisor(&config, None);
    let script = async {
        wait_until_async("three records read", || records_read(&observer) == 3).await;
        assert_eq!(observer.not_ready(), None);
        signal_tx.send(Signal::Interrupt).await.unwrap();
    };
    let (outcome, ()) = tokio::join!(run_bounded(s, running), script);
    assert!(matches!(outcome.ending, Ending::Finished), "{outcome:?}");
    assert_eq!(outcome.exit_code(), 0);
    assert!(outcome.lines(None).is_empty());
    assert!(shutdown.is_triggered());
    assert_eq!(observer.not_ready().as_deref(), Some("stopping"));
    let totals = &outcome.report.counters.totals;
    // The unterminated line is dead-lettered as incomplete, the rest written.
    assert_eq!(
        (totals.read, totals.written, totals.dead_lettered),
        (4, 3, 1)
    );
    assert_eq!(outcome.report.in_flight, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\ntwo\nthree\n");
    let dl = std::fs::read_to_string(dir.path().join("dl.ndjson")).unwrap();
    assert!(dl.contains("incomplete record"), "{dl}");
    drop(writer);
}

#[test]
fn the_grace_period_running_out_gives_up_saying_what_was_not_flushed() {
    let b = blocked(500, 5_000, false);
    let (mut s, signal_tx, _reload_tx) = supervisor(&b.config, None);
    let ticks = Arc::new(AtomicUsize::new(0));
    s.housekeeping = Box::new({
        let ticks = ticks.clone();
        move || {
            ticks.fetch_add(1, Ordering::Relaxed);
        }
    });
    let shutdown = b.running.shutdown();
    let (outcome, waited) = paused_runtime().block_on(async {
        signal_tx.send(Signal::Terminate).await.unwrap();
        let started = Instant::now();
        let outcome = s.run(b.running).await;
        (outcome, started.elapsed())
    });
    assert!(shutdown.is_triggered());
    assert!(
        matches!(
            outcome.ending,
            Ending::GaveUp {
                why: GiveUp::Grace,
                grace
            } if grace == Duration::from_secs(5)
        ),
        "{outcome:?}"
    );
    // It waited the grace period (on the paused clock), no less and not much more.
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    // Housekeeping ran every second meanwhile (at 0, 1, ..., 5 s).
    assert!(ticks.load(Ordering::Relaxed) >= 5, "{ticks:?}");
    assert_eq!(outcome.exit_code(), EXIT_UNFLUSHED);
    assert_eq!(outcome.report.in_flight, 500);
    assert_eq!(
        outcome.lines(None),
        [
            "edge-router: shutdown did not finish within 5000 ms; 500 record(s) were read but not \
          flushed"
        ]
    );
    // Nothing was lost for all that: once the FIFO is read, the sink writes every record.
    let got = drain(b.fifo.clone()).recv_timeout(LONG).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), numbered(500));
    drop(b.dir);
}

#[test]
fn a_second_signal_gives_up_at_once() {
    let b = blocked(200, 600_000, false);
    let (s, signal_tx, _reload_tx) = supervisor(&b.config, None);
    let shutdown = b.running.shutdown();
    let (outcome, waited) = paused_runtime().block_on(async {
        signal_tx.send(Signal::Interrupt).await.unwrap();
        let started = Instant::now();
        let script = async {
            // The first signal stopped the pipeline; the sink still holds its records.
            shutdown.wait().await;
            signal_tx.send(Signal::Terminate).await.unwrap();
        };
        let (outcome, ()) = tokio::join!(s.run(b.running), script);
        (outcome, started.elapsed())
    });
    assert!(
        matches!(
            outcome.ending,
            Ending::GaveUp {
                why: GiveUp::SecondSignal,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(waited < Duration::from_secs(600), "{waited:?}");
    assert_eq!(outcome.exit_code(), EXIT_UNFLUSHED);
    assert_eq!(
        outcome.lines(None),
        [
            "edge-router: shutdown did not finish within 600000 ms; 200 record(s) were read but \
          not flushed"
        ]
    );
    let got = drain(b.fifo.clone()).recv_timeout(LONG).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), numbered(200));
}

#[tokio::test]
async fn a_failed_component_stops_the_pipeline_and_the_run_exits_1_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    // `blocker` is a file, so the directory `blocker/` cannot be made: the sink fails.
    std::fs::write(dir.path().join("blocker"), b"").unwrap();
    let sinks = format!(
        "{}\n[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:0\"\n",
        file_sink("out", &dir.path().join("blocker/out.ndjson"))
    );
    let config = parse(&config_text(dir.path(), 600_000, &sinks));
    let (input, mut writer) = pipe();
    writer.write_all(numbered(100).as_bytes()).unwrap();
    let running = start(&config, input, false);
    let shutdown = running.shutdown();
    let (s, _signal_tx, _reload_tx) = supervisor(&config, None);
    // No signal: the failure alone stops both sources (the pipe stays open).
    let outcome = run_bounded(s, running).await;
    assert!(shutdown.is_triggered());
    let Ending::Failed(failures) = &outcome.ending else {
        panic!("{outcome:?}")
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(outcome.exit_code(), EXIT_FAILED);
    let lines = outcome.lines(Some(stats::Format::Json));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with('{'), "the stats first: {}", lines[0]);
    assert!(
        lines[1].starts_with("edge-router: sink `out` failed:") && lines[1].contains("blocker"),
        "{}",
        lines[1]
    );
    // Every record read was dead-lettered with the error.
    let totals = &outcome.report.counters.totals;
    assert_eq!(totals.read, 100);
    assert_eq!(totals.written, 0);
    assert_eq!(totals.dead_lettered, 100);
    assert_eq!(outcome.report.in_flight, 0);
    drop(writer);
}

#[tokio::test]
async fn a_hang_up_reloads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("pipeline.toml");
    let (a, b) = (d.join("a.ndjson"), d.join("b.ndjson"));
    std::fs::write(&path, config_text(d, 600_000, &file_sink("a", &a))).unwrap();
    let config = config::load_file(&path).unwrap();
    let (input, mut writer) = pipe();
    let running = start(&config, input, true);
    let observer = running.observer();
    let (s, signal_tx, _reload_tx) = supervisor(&config, Some(path.clone()));
    let script = async {
        let two = format!("{}\n{}", file_sink("a", &a), file_sink("b", &b));
        std::fs::write(&path, config_text(d, 600_000, &two)).unwrap();
        signal_tx.send(Signal::HangUp).await.unwrap();
        wait_until_async("sink b to start", || has_queue(&observer, "sinks.b")).await;
        // Records read after the reload go to both sinks; end of input ends the run.
        writer.write_all(b"after\n").unwrap();
        drop(writer);
    };
    let (outcome, ()) = tokio::join!(run_bounded(s, running), script);
    assert!(matches!(outcome.ending, Ending::Finished), "{outcome:?}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "after\n");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "after\n");
}

#[tokio::test]
async fn watching_the_config_file_reloads_it_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("pipeline.toml");
    let (a, b) = (d.join("a.ndjson"), d.join("b.ndjson"));
    std::fs::write(&path, config_text(d, 600_000, &file_sink("a", &a))).unwrap();
    let config = config::load_file(&path).unwrap();
    let (input, mut writer) = pipe();
    let running = start(&config, input, true);
    let observer = running.observer();
    let (mut s, _signal_tx, _reload_tx) = supervisor(&config, Some(path.clone()));
    s.watch_config = true;
    s.every = Duration::from_millis(10);
    let script = async {
        let two = format!("{}\n{}", file_sink("a", &a), file_sink("b", &b));
        std::fs::write(&path, config_text(d, 600_000, &two)).unwrap();
        // A modification time the reloader has not seen (a write within the same clock tick
        // as the first one could leave it as it was).
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        wait_until_async("sink b to start", || has_queue(&observer, "sinks.b")).await;
        writer.write_all(b"after\n").unwrap();
        drop(writer);
    };
    let (outcome, ()) = tokio::join!(run_bounded(s, running), script);
    assert!(matches!(outcome.ending, Ending::Finished), "{outcome:?}");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "after\n");
}

#[test]
fn reloads_are_refused_while_stopping() {
    let b = blocked(10, 600_000, true);
    // The same config in a file: a reload would succeed but for the stopping.
    let path = b.dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        config_text(b.dir.path(), 600_000, &file_sink("out", &b.fifo)),
    )
    .unwrap();
    let (s, signal_tx, reload_tx) = supervisor(&b.config, Some(path));
    let shutdown = b.running.shutdown();
    let (outcome, answer) = paused_runtime().block_on(async {
        signal_tx.send(Signal::Interrupt).await.unwrap();
        let script = async {
            shutdown.wait().await;
            let (reply, answer) = oneshot::channel();
            reload_tx
                .send(ReloadRequest { reply: Some(reply) })
                .unwrap();
            let answer = answer.await.unwrap();
            signal_tx.send(Signal::Interrupt).await.unwrap();
            answer
        };
        tokio::join!(s.run(b.running), script)
    });
    assert_eq!(answer, Err("the router is stopping".to_owned()));
    assert!(
        matches!(outcome.ending, Ending::GaveUp { .. }),
        "{outcome:?}"
    );
    let got = drain(b.fifo.clone()).recv_timeout(LONG).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), numbered(10));
}

/// A notifier whose datagrams land in the returned list (one string per datagram).
fn recording_notifier(
    watchdog: Option<Duration>,
) -> (notify::Notifier, Arc<std::sync::Mutex<Vec<String>>>) {
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let send: notify::SendFn = Box::new({
        let sent = sent.clone();
        move |states| {
            let text: Vec<String> = states.iter().map(ToString::to_string).collect();
            sent.lock().unwrap().push(text.join("\n"));
            Ok(())
        }
    });
    (notify::Notifier::new(send, watchdog), sent)
}

/// The first line of each datagram sent so far.
fn firsts(sent: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    sent.lock()
        .unwrap()
        .iter()
        .map(|d| d.lines().next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn systemd_hears_ready_then_reloading_and_ready_around_a_reload_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("pipeline.toml");
    let (a, b) = (d.join("a.ndjson"), d.join("b.ndjson"));
    std::fs::write(&path, config_text(d, 600_000, &file_sink("a", &a))).unwrap();
    let config = config::load_file(&path).unwrap();
    let (input, mut writer) = pipe();
    let running = start(&config, input, true);
    let observer = running.observer();
    let (mut s, signal_tx, _reload_tx) = supervisor(&config, Some(path.clone()));
    let (n, sent) = recording_notifier(None);
    s.notify = Some(n);
    let script = async {
        wait_until_async("READY=1", || !firsts(&sent).is_empty()).await;
        writer.write_all(b"before\n").unwrap();
        wait_until_async("a record read", || records_read(&observer) == 1).await;
        let two = format!("{}\n{}", file_sink("a", &a), file_sink("b", &b));
        std::fs::write(&path, config_text(d, 600_000, &two)).unwrap();
        signal_tx.send(Signal::HangUp).await.unwrap();
        wait_until_async("the reload to end", || firsts(&sent).len() >= 3).await;
        assert!(has_queue(&observer, "sinks.b"));
        signal_tx.send(Signal::Terminate).await.unwrap();
    };
    let (outcome, ()) = tokio::join!(run_bounded(s, running), script);
    assert!(matches!(outcome.ending, Ending::Finished), "{outcome:?}");
    assert_eq!(
        firsts(&sent),
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent[0],
        "READY=1\nSTATUS=running: read 0, written 0, dead-lettered 0, in flight 0; sinks: a 0"
    );
    assert!(sent[1].contains("\nMONOTONIC_USEC="), "{sent:?}");
    assert!(sent[1].contains("\nSTATUS=reloading: read 1"), "{sent:?}");
    assert!(
        sent[2].ends_with(
            "STATUS=running: read 1, written 1, dead-lettered 0, in flight 0; sinks: a 1, b 0"
        ),
        "{sent:?}"
    );
    assert!(
        sent[3].starts_with("STOPPING=1\nSTATUS=stopping:"),
        "{sent:?}"
    );
    drop(writer);
}

#[tokio::test]
async fn a_reload_refused_at_once_is_still_announced_and_followed_by_ready() {
    // No config file: the request is refused without starting; systemd still sees the pair.
    let dir = tempfile::tempdir().unwrap();
    let config = parse(&config_text(
        dir.path(),
        600_000,
        &file_sink("a", &dir.path().join("a")),
    ));
    let (input, writer) = pipe();
    let running = start(&config, input, false);
    let (mut s, signal_tx, _reload_tx) = supervisor(&config, None);
    let (n, sent) = recording_notifier(None);
    s.notify = Some(n);
    let script = async {
        signal_tx.send(Signal::HangUp).await.unwrap();
        wait_until_async("the refusal", || firsts(&sent).len() >= 3).await;
        drop(writer);
    };
    let (outcome, ()) = tokio::join!(run_bounded(s, running), script);
    assert!(matches!(outcome.ending, Ending::Finished), "{outcome:?}");
    // End of input: STOPPING=1 all the same.
    assert_eq!(
        firsts(&sent),
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    );
}

#[test]
fn a_wedged_pipeline_stops_petting_the_watchdog_until_records_move_again() {
    // 300 records read and held by a sink blocked in `open` on a FIFO: nothing moves.
    let b = blocked(300, 600_000, false);
    let observer = b.running.observer();
    wait_until("the sink's queue to hold every record", || {
        observer
            .report()
            .counters
            .components
            .iter()
            .any(|c| c.name == "sinks.out" && c.counters.records_in == 300)
    });
    let (mut s, signal_tx, _reload_tx) = supervisor(&b.config, None);
    let (n, sent) = recording_notifier(Some(Duration::from_secs(4)));
    s.notify = Some(n);
    let pets = |sent: &std::sync::Mutex<Vec<String>>| {
        sent.lock()
            .unwrap()
            .iter()
            .filter(|d| d.contains("WATCHDOG=1"))
            .count()
    };
    let fifo = b.fifo.clone();
    let outcome = paused_runtime().block_on(async {
        let script = async {
            // Virtual time: pets every 2 s until nothing has moved for more than 4 s.
            let t0 = tokio::time::Instant::now();
            wait_until_async("the stall to be reported", || {
                sent.lock()
                    .unwrap()
                    .iter()
                    .any(|d| d.contains("STATUS=running (stalled: nothing moved for"))
            })
            .await;
            let stalled_at = t0.elapsed();
            assert!(stalled_at > Duration::from_secs(4), "{stalled_at:?}");
            // Pets at 0 s (the first look), 2 s and 4 s at most, then none for a minute.
            let before = pets(&sent);
            assert!((1..=3).contains(&before), "{before}");
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(pets(&sent), before, "{:?}", sent.lock().unwrap());
            // The sink is unblocked: records move, pets resume.
            let drained = drain(fifo.clone());
            wait_until_async("pets to resume", || pets(&sent) > before).await;
            signal_tx.send(Signal::Terminate).await.unwrap();
            drained
        };
        // Not `run_bounded`: its timeout would run out on the paused clock; the script's waits
        // are bounded in real time.
        let (outcome, drained) = tokio::join!(s.run(b.running), script);
        let got = drained.recv_timeout(LONG).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), numbered(300));
        outcome
    });
    assert!(matches!(outcome.ending, Ending::Finished), "{outcome:?}");
    assert!(
        sent.lock()
            .unwrap()
            .iter()
            .any(|d| d.contains("STATUS=running: read 300, written 300"))
    );
}
