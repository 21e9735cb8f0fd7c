//! The dashboard in a real browser: headless Chromium opens the page of a
//! running pipeline twice and the test reads the page itself (the DOM
//! Chromium dumps, not the server's JSON). It checks that every stage and
//! edge is drawn, that the counters move between the two reads, and that
//! the stages upstream of the slow one are the ones shown backpressured.
//! It also saves a screenshot to `target/dashboard.png`.
//!
//! Needs Chromium (`apt-get install chromium`; another binary through
//! `DEMANDFLOW_CHROMIUM`), hence ignored by default; CI runs it with
//! `--ignored` (`.ci/run`). Run it with:
//!
//! ```text
//! cargo test -p demandflow-stages --features dashboard --test dashboard_browser -- --ignored
//! ```

mod dashboard_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dashboard_support::{serve_slow_pipeline, SLOW, STAGES, UPSTREAM_OF_SLOW};

/// How long one Chromium run may take on a loaded machine.
const CHROMIUM_PATIENCE: Duration = Duration::from_secs(120);

fn chromium() -> String {
    if let Ok(path) = std::env::var("DEMANDFLOW_CHROMIUM") {
        return path;
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
            .unwrap_or(false);
        if found {
            return name.to_owned();
        }
    }
    panic!("no chromium on PATH (apt-get install chromium, or set DEMANDFLOW_CHROMIUM)");
}

/// Runs headless Chromium with `args` and then `url`; returns its stdout.
/// A fresh profile per run, so runs never share (or lock) one.
fn run_chromium(args: &[&str], url: &str) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("demandflow-dashboard-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            &format!("--user-data-dir={}", dir.join("profile").display()),
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium still running after {CHROMIUM_PATIENCE:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The attributes of an element's opening tag (`tag` starts at `<`), as
/// Chromium serialises them: `name="value"`, with `&quot;`/`&amp;` escapes.
fn attributes(tag: &str) -> HashMap<String, String> {
    let end = tag.find('>').unwrap_or(tag.len());
    let mut rest = &tag[..end];
    let mut attrs = HashMap::new();
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].rsplit(' ').next().unwrap_or("").to_owned();
        let after = &rest[eq + 2..];
        let close = after.find('"').unwrap_or(after.len());
        let value = after[..close]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        attrs.insert(name, value);
        rest = &after[(close + 1).min(after.len())..];
    }
    attrs
}

/// What the dumped page shows of a stage.
#[derive(Debug)]
struct DrawnStage {
    attrs: HashMap<String, String>,
    /// The hue of the box's fill (`hsl(H ...)`): 130 green (free) to 0 red
    /// (held back).
    hue: f64,
}

impl DrawnStage {
    fn number(&self, name: &str) -> f64 {
        self.attrs
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {:?}", self.attrs))
    }
}

/// The page as Chromium rendered it.
#[derive(Debug)]
struct Page {
    stages: HashMap<String, DrawnStage>,
    edges: Vec<HashMap<String, String>>,
    header: HashMap<String, HashMap<String, String>>,
}

fn parse_page(dom: &str) -> Page {
    let mut stages = HashMap::new();
    let mut edges = Vec::new();
    let mut header = HashMap::new();
    for (at, _) in dom.match_indices('<') {
        let tag = &dom[at..];
        let attrs = attributes(tag);
        if tag.starts_with("<g ") && attrs.contains_key("data-stage") {
            // The box is the first rect in the stage's group.
            let rect = &tag[tag.find("<rect").expect("a stage has a box")..];
            let fill = attributes(rect).remove("fill").unwrap_or_default();
            let hue = fill
                .strip_prefix("hsl(")
                .and_then(|f| f.split(' ').next())
                .and_then(|h| h.parse().ok())
                .unwrap_or_else(|| panic!("an hsl fill: {fill}"));
            stages.insert(attrs["data-stage"].clone(), DrawnStage { attrs, hue });
        } else if tag.starts_with("<g ") && attrs.contains_key("data-from") {
            edges.push(attrs);
        } else if let Some(id) = attrs.get("id") {
            header.insert(id.clone(), attrs);
        }
    }
    Page {
        stages,
        edges,
        header,
    }
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: apt-get install chromium"]
async fn the_page_shows_where_the_pipeline_is_held_back() {
    let (run, dashboard) = serve_slow_pipeline().await;
    let url = dashboard.url();
    // Chromium blocks its thread: run it off the runtime the pipeline and
    // the server use.
    let dump = |url: String| async move {
        tokio::task::spawn_blocking(move || run_chromium(&["--dump-dom"], &url))
            .await
            .unwrap()
    };
    // Let the occupancy window fill with the pipeline's steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = parse_page(&dump(url.clone()).await);
    let second = parse_page(&dump(url.clone()).await);

    for page in [&first, &second] {
        let mut drawn: Vec<&str> = page.stages.keys().map(String::as_str).collect();
        drawn.sort_unstable();
        let mut expected = STAGES.to_vec();
        expected.sort_unstable();
        assert_eq!(drawn, expected, "every stage is drawn, once");
        let mut arrows: Vec<(&str, &str)> = page
            .edges
            .iter()
            .map(|e| (e["data-from"].as_str(), e["data-to"].as_str()))
            .collect();
        arrows.sort_unstable();
        assert_eq!(
            arrows,
            [
                ("double[0]", "slow_sink"),
                ("double[1]", "slow_sink"),
                ("numbers", "double[0]"),
                ("numbers", "double[1]"),
            ],
            "every edge is drawn"
        );
        for e in &page.edges {
            assert!(
                e["data-demand"].parse::<u64>().is_ok()
                    && e["data-buffered"].parse::<u64>().is_ok()
            );
        }
        assert_eq!(page.header["status"]["data-status"], "running");
    }

    // The counters move between the two reads.
    let t = |p: &Page| p.header["t"]["data-t-ms"].parse::<u64>().unwrap();
    assert!(t(&second) > t(&first));
    for (stage, counter) in [("numbers", "data-emitted"), (SLOW, "data-processed")] {
        let (a, b) = (
            first.stages[stage].number(counter),
            second.stages[stage].number(counter),
        );
        assert!(b > a, "{stage} {counter}: {a} then {b}");
    }
    assert!(second.stages[SLOW].number("data-throughput") > 0.0);

    // The slow stage is busy, not held back; the stages directly upstream
    // of it are the most backpressured (stages further up may be as much:
    // backpressure propagates) and drawn red, the slow one green.
    let page = &second;
    let bp = |s: &str| page.stages[s].number("data-backpressured");
    let most = STAGES.iter().map(|s| bp(s)).fold(0.0, f64::max);
    let shown: Vec<(&str, f64)> = STAGES.iter().map(|s| (*s, bp(s))).collect();
    for s in UPSTREAM_OF_SLOW {
        assert!(bp(s) > 0.5, "{s} is shown backpressured: {shown:?}");
        assert!(
            bp(s) >= most - 0.05,
            "{s} ({}) is among the most backpressured ({most})",
            bp(s)
        );
        assert!(
            page.stages[s].hue < 40.0,
            "{s} is drawn red: hue {}",
            page.stages[s].hue
        );
    }
    assert!(
        bp(SLOW) < 0.5,
        "the slow stage is not the one held back: {}",
        bp(SLOW)
    );
    assert!(page.stages[SLOW].number("data-busy") > 0.5);
    assert!(
        page.stages[SLOW].hue > 80.0,
        "the slow stage is drawn green"
    );

    // A screenshot, for people.
    let png = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    tokio::task::spawn_blocking(move || run_chromium(&[&shot, "--window-size=1280,800"], &url))
        .await
        .unwrap();
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    println!("screenshot: {}", png.display());

    run.cancel();
    let _ = run.join().await;
    dashboard.shutdown().await.unwrap();
}
