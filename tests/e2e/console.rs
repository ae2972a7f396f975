//! `bannin console` in a real browser (headless Chromium over WebDriver),
//! against a real collector and agent in the namespace lab: a responder's whole
//! flow, then what the console must refuse. Screenshots of every page are saved
//! under `target/console-screenshots/`.

use std::path::Path;
use std::time::Duration;

use bannin_tests::browser::{self, Driver, screenshot, wait_for, wait_until_js};
use bannin_tests::netns::Host;
use bannin_tests::{Proc, bin, operator_toml};
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::response::{PORT, Site};

/// chromedriver's port inside the collector's namespace (nothing else listens there).
const DRIVER_PORT: u16 = 9515;

/// Starts `bannin console` as the operator of `config`, in the collector's
/// namespace; returns it and its one-time login URL.
fn start_console(site: &Site, config: &Path, name: &str) -> (Proc, String) {
    let out = site.dir.path().join(format!("console-{name}.out"));
    let mut command = site.lab.command(Host::Collector, &bin("bannin"));
    command
        .args(["console", "--listen", "127.0.0.1:0", "--config"])
        .arg(config);
    let proc = Proc::spawn_with_stdout(
        command,
        site.dir.path().join(format!("console-{name}.log")),
        &out,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(url) = text.lines().find(|l| l.contains("/login?token=")) {
            return (proc, url.trim().to_owned());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no login URL from the console\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `fetch` from the page: (status, body text).
async fn fetch(client: &Client, path: &str, body: &str, credentials: &str) -> (u64, String) {
    let script = r#"
        const [path, body, credentials, done] = arguments;
        fetch(path, { method: "POST", credentials, headers: { "Content-Type": "application/x-www-form-urlencoded" }, body })
            .then(r => r.text().then(t => done([r.status, t])))
            .catch(e => done([0, String(e)]));
    "#;
    let v = client
        .execute_async(script, vec![json!(path), json!(body), json!(credentials)])
        .await
        .expect("fetch");
    (
        v[0].as_u64().unwrap_or(0),
        v[1].as_str().unwrap_or_default().to_owned(),
    )
}

async fn csrf(client: &Client) -> String {
    client
        .execute(
            "return document.querySelector('meta[name=csrf-token]').content",
            vec![],
        )
        .await
        .expect("csrf meta")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn text(client: &Client, css: &str) -> String {
    wait_for(client, css, 10).await.text().await.expect("text")
}

async fn click(client: &Client, css: &str) {
    wait_for(client, css, 10)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn fill(client: &Client, css: &str, value: &str) {
    let e = wait_for(client, css, 10).await;
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

/// Opens the host page and submits its isolate or release form (`form`:
/// "isolate" or "release") with `reason` and the host id typed as `confirm`.
async fn respond(client: &Client, base: &str, form: &str, reason: &str, confirm: &str) {
    client
        .goto(&format!("{base}/hosts/web-01"))
        .await
        .expect("host page");
    fill(client, &format!("#{form}-form input[name=reason]"), reason).await;
    fill(
        client,
        &format!("#{form}-form input[name=confirm]"),
        confirm,
    )
    .await;
    click(client, &format!("#{form}-button")).await;
}

/// Waits until the command page the form led to shows `succeeded`.
async fn command_succeeds(client: &Client, what: &str) {
    wait_until_js(
        client,
        "return document.getElementById('command-state')?.textContent === 'succeeded'",
        60,
        what,
    )
    .await;
}

/// The responder's flow, as alice (admin).
async fn responder_flow(site: &Site, client: &Client, url: &str, base: &str) {
    // Log in with the printed URL; the token then no longer works.
    client.goto(url).await.expect("login");
    wait_for(client, "#chart-hourly", 10).await;
    assert_eq!(text(client, "#operator").await, "alice");
    screenshot(client, "01-overview").await;

    // The live queue: a finding provoked now appears without a reload, and the
    // `<script>` in its file name stays text.
    client
        .goto(&format!("{base}/findings"))
        .await
        .expect("findings");
    wait_until_js(
        client,
        "return document.getElementById('queue').dataset.live === 'open'",
        15,
        "the live queue to connect",
    )
    .await;
    client
        .execute("window.__notReloaded = true; return true", vec![])
        .await
        .expect("marker");
    // No `/` can be in a name; a bidi override and an ESC ride along.
    let hostile = " <script>window.__pwned=1<\u{202e}gpj.exe\x1b[2J";
    std::fs::write(site.watched.join(hostile), b"x").expect("hostile file");
    wait_until_js(
        client,
        "return [...document.querySelectorAll('#queue td.summary')].some(td => td.textContent.includes('<script>window.__pwned=1<'))",
        60,
        "the provoked finding in the live queue",
    )
    .await;
    let checks = client
        .execute(
            "return [window.__notReloaded === true, document.querySelectorAll('#queue script, #queue img').length, window.__pwned === undefined]",
            vec![],
        )
        .await
        .expect("checks");
    assert_eq!(
        checks,
        json!([true, 0, true]),
        "no reload, no element made from the name, nothing ran"
    );
    let shown = client
        .execute(
            "return [...document.querySelectorAll('#queue td.summary')].map(td => td.textContent).find(t => t.includes('__pwned'))",
            vec![],
        )
        .await
        .expect("summary");
    let shown = shown.as_str().unwrap_or_default();
    assert!(
        shown.contains("\\u{202e}gpj.exe\\x1b[2J")
            && !shown.contains('\u{202e}')
            && !shown.contains('\x1b'),
        "the bidi override and the ESC are shown, not obeyed: {shown:?}"
    );
    screenshot(client, "02-findings-live").await;

    // Open the finding: the summary is text in the DOM too.
    let row = client
        .execute(
            "return [...document.querySelectorAll('#queue tr')].find(tr => tr.textContent.includes('<script>window.__pwned')).dataset.finding",
            vec![],
        )
        .await
        .expect("row id");
    let finding = row.as_str().expect("finding id").to_owned();
    client
        .goto(&format!("{base}/findings/{finding}"))
        .await
        .expect("finding page");
    assert!(
        text(client, "#finding-summary")
            .await
            .contains("<script>window.__pwned=1<")
    );
    // Acknowledge it with a note.
    fill(client, "#state-form textarea[name=note]", "looking at it").await;
    click(client, "#ack").await;
    wait_until_js(
        client,
        "return document.getElementById('finding-state')?.textContent === 'acknowledged'",
        10,
        "the finding acknowledged",
    )
    .await;
    screenshot(client, "03-finding").await;

    // Open an incident from it: at the finding's severity, not "high" for all.
    let finding_severity = client
        .execute(
            "return document.querySelector('#open-incident select[name=severity]').value",
            vec![],
        )
        .await
        .expect("severity");
    assert_eq!(finding_severity, json!("medium"), "file.odd_name is medium");
    click(client, "#open-incident-button").await;
    wait_for(client, "#incident-title", 10).await;
    assert!(
        text(client, "#timeline").await.contains("finding"),
        "the timeline starts with the finding"
    );
    screenshot(client, "04-incident").await;
    // The overview's cards count what they link to (open: new or acknowledged,
    // and the finding above is acknowledged now).
    client.goto(&format!("{base}/")).await.expect("overview");
    let card = client
        .execute(
            "const c = document.querySelector('.count[data-severity=medium]'); return [c.textContent, c.parentElement.getAttribute('href')]",
            vec![],
        )
        .await
        .expect("card");
    let counted: usize = card[0]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("count");
    let link = card[1].as_str().expect("href").to_owned();
    assert!(counted >= 1, "{card}");
    client
        .goto(&format!("{base}{link}"))
        .await
        .expect("card's list");
    let listed = client
        .find_all(Locator::Css("#queue tbody tr"))
        .await
        .expect("rows")
        .len();
    assert_eq!(
        listed, counted,
        "the medium card's count and its list ({link})"
    );
    // The hosts table: each host's open count is the list it links to.
    client.goto(&format!("{base}/")).await.expect("overview");
    let row = client
        .execute(
            "const a = document.querySelector('#worst-hosts tbody tr td:nth-child(3) a'); return [a.textContent, a.getAttribute('href')]",
            vec![],
        )
        .await
        .expect("worst hosts");
    let open: usize = row[0].as_str().and_then(|c| c.parse().ok()).expect("open");
    let link = row[1].as_str().expect("href").to_owned();
    client
        .goto(&format!("{base}{link}"))
        .await
        .expect("host's open findings");
    let listed = client
        .find_all(Locator::Css("#queue tbody tr"))
        .await
        .expect("rows")
        .len();
    assert_eq!(listed, open, "the host's open count and its list ({link})");
    // Search (by the collector): the words of a path find its finding.
    for name in ["bulk-one", "bulk-two", "bulk-three"] {
        std::fs::write(site.watched.join(format!(" {name}")), b"x").expect("odd file");
    }
    let mut bulk_ids: Vec<u64> = Vec::new();
    for _ in 0..150 {
        let (_, found, _) = site.cli(&["findings", "--search", "BULK- watched"]);
        bulk_ids = found
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["id"].as_u64()).collect())
            .unwrap_or_default();
        if bulk_ids.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        bulk_ids.len(),
        3,
        "`bannin findings --search` finds the three by path"
    );
    client
        .goto(&format!("{base}/findings"))
        .await
        .expect("findings");
    fill(client, "#findings-filter input[name=q]", "bulk-two").await;
    click(client, "#filter-button").await;
    wait_until_js(
        client,
        "const rows = [...document.querySelectorAll('#queue tbody tr')]; return rows.length === 1 && rows[0].textContent.includes('bulk-two')",
        10,
        "the search by path",
    )
    .await;
    // Grouped by kind, the three are one group, acknowledged in one action;
    // the action log has one entry per finding.
    client
        .goto(&format!("{base}/findings?q=bulk-&group=kind"))
        .await
        .expect("grouped");
    let group = text(client, "#groups tbody tr").await;
    assert!(
        group.contains("file.odd_name") && group.contains('3'),
        "{group}"
    );
    fill(
        client,
        "#bulk-0 input[name=note]",
        "one action for the group",
    )
    .await;
    click(client, "#bulk-0 button[value=acknowledged]").await;
    wait_for(client, "#groups", 10).await;
    for id in &bulk_ids {
        let (_, shown, _) = site.cli(&["finding", "show", &id.to_string()]);
        assert_eq!(shown["state"], "acknowledged", "{shown}");
    }
    let (_, actions, _) = site.cli(&["actions"]);
    let acked = actions
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| {
                    x["verb"] == "finding.state"
                        && x["result"].to_string().contains("acknowledged")
                        && bulk_ids
                            .iter()
                            .any(|id| x["target"] == format!("finding {id}").as_str())
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(acked, 3, "one action-log entry per finding: {actions}");

    // Picked rows: one box checked, one action for it alone; the page says
    // what changed.
    client
        .goto(&format!("{base}/findings?q=bulk-"))
        .await
        .expect("findings");
    let one = bulk_ids[0];
    click(client, &format!("#queue input.pick[value='{one}']")).await;
    assert_eq!(text(client, "#picked-count").await, "1");
    fill(client, "#bulk-picked input[name=note]", "picked one").await;
    click(client, "#bulk-picked button[value=resolved]").await;
    wait_for(client, "#bulk-done", 10).await;
    assert!(
        text(client, "#bulk-done")
            .await
            .contains("1 finding now resolved"),
        "the page says what changed"
    );
    for id in &bulk_ids {
        let (_, shown, _) = site.cli(&["finding", "show", &id.to_string()]);
        let want = if *id == one {
            "resolved"
        } else {
            "acknowledged"
        };
        assert_eq!(shown["state"], want, "{shown}");
    }
    // States stay live: a change made elsewhere shows without a reload.
    client
        .execute("window.__notReloaded = true; return true", vec![])
        .await
        .expect("marker");
    let two = bulk_ids[1];
    let (ok, _, err) = site.cli(&["finding", "false-positive", &two.to_string()]);
    assert!(ok, "{err}");
    wait_until_js(
        client,
        &format!("return document.getElementById('f{two}-state').textContent.trim() === 'false_positive' && window.__notReloaded === true"),
        30,
        "the state changed elsewhere, shown in place",
    )
    .await;
    // Sorted on the collector by a column header: by state, new first.
    click(client, "#queue th a[data-sort=state]").await;
    wait_until_js(
        client,
        "return location.search.includes('sort=state') && document.querySelectorAll('#queue tbody tr').length === 3",
        10,
        "the queue sorted by state",
    )
    .await;
    let states = client
        .execute(
            "return [...document.querySelectorAll('#queue tbody tr')].map(tr => tr.querySelector('[id$=-state]').textContent.trim())",
            vec![],
        )
        .await
        .expect("states");
    assert_eq!(
        states,
        json!(["acknowledged", "resolved", "false_positive"])
    );
    // Search by pid: a listener started now is a finding naming its pid,
    // found by `pid:N` (the field) and by the number alone.
    let mut listener = site.lab.command(Host::Agent, Path::new("python3"));
    listener.args(["-m", "http.server", "9107", "--bind", "127.0.0.1"]);
    let _listener = Proc::spawn(listener, site.dir.path().join("listener-9107.log"));
    let mut pid = String::new();
    for _ in 0..150 {
        let (_, found, _) =
            site.cli(&["findings", "--kind", "net.new_listener", "--search", "9107"]);
        if let Some(p) = found.as_array().and_then(|a| {
            a.iter()
                .find_map(|f| f["attributes"]["pid"].as_str().map(str::to_owned))
        }) {
            pid = p;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!pid.is_empty(), "the new listener's finding names its pid");
    for q in [format!("pid:{pid}"), pid.clone()] {
        client
            .goto(&format!("{base}/findings"))
            .await
            .expect("findings");
        fill(client, "#findings-filter input[name=q]", &q).await;
        click(client, "#filter-button").await;
        wait_until_js(
            client,
            "const rows = [...document.querySelectorAll('#queue tbody tr')]; return rows.length >= 1 && rows.some(tr => tr.textContent.includes('9107'))",
            10,
            &format!("the search by pid ({q})"),
        )
        .await;
    }
    // The finding's page now links the incident that holds it.
    client
        .goto(&format!("{base}/findings/{finding}"))
        .await
        .expect("finding page");
    assert!(
        text(client, "#finding-incidents")
            .await
            .contains("incident 1"),
        "the finding links its incident"
    );

    // The host page, and a triage question answered in a table.
    client
        .goto(&format!("{base}/hosts/web-01"))
        .await
        .expect("host page");
    assert_eq!(text(client, "#host-status").await, "online");
    // Its findings come first, and every section is one click away.
    let layout = client
        .execute(
            "return [document.querySelector('main h2').id, [...document.querySelectorAll('nav.sections a')].map(a => a.getAttribute('href')).join(' ')]",
            vec![],
        )
        .await
        .expect("layout");
    assert_eq!(layout[0], "findings", "{layout}");
    assert_eq!(
        layout[1], "#findings #response #triage #commands #sensors #telemetry",
        "{layout}"
    );
    // Telemetry filtered by kind: only that kind is listed.
    let kinds_shown = || async {
        let kinds = client
            .execute(
                "return [...document.querySelectorAll('#events td.kind')].map(td => td.textContent)",
                vec![],
            )
            .await
            .expect("kinds");
        kinds
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect::<Vec<String>>()
    };
    let all = kinds_shown().await;
    let first = all.first().expect("the host has telemetry").clone();
    let prefix = format!("{}.", first.split('.').next().unwrap_or_default());
    client
        .goto(&format!("{base}/hosts/web-01?kind={prefix}*&minutes=1440"))
        .await
        .expect("filtered host page");
    let kinds = kinds_shown().await;
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k.starts_with(&prefix)),
        "{prefix}*: {kinds:?}"
    );
    client
        .goto(&format!("{base}/hosts/web-01?kind=no.such_kind&minutes=5"))
        .await
        .expect("filtered host page");
    assert!(kinds_shown().await.is_empty());
    assert!(
        text(client, "#telemetry-count")
            .await
            .starts_with("0 event")
    );
    client
        .goto(&format!("{base}/hosts/web-01"))
        .await
        .expect("host page");
    screenshot(client, "05-host").await;
    wait_for(client, "#triage-question", 10)
        .await
        .select_by_value("listeners")
        .await
        .expect("select");
    click(client, "#triage-button").await;
    wait_for(client, "#triage-rows", 70).await;
    let rows = client
        .find_all(Locator::Css("#triage-rows tbody tr"))
        .await
        .expect("rows");
    assert!(
        !rows.is_empty(),
        "the agent's listeners (the python server on 9001)"
    );
    assert!(text(client, "#triage-rows").await.contains("9001"));
    assert!(
        text(client, "#triage-rows").await.contains("python3"),
        "a listener names its process"
    );
    screenshot(client, "06-triage").await;

    // Isolate with a reason; the confirmation must name the host.
    respond(
        client,
        base,
        "isolate",
        "console e2e: contain web-01",
        "web-02",
    )
    .await;
    assert!(
        text(client, "#error")
            .await
            .contains("type its id (web-01)"),
        "a confirmation naming another host is refused"
    );
    // On the host's page again, with its navigation and the reason as typed.
    let kept = client
        .execute(
            "return [document.querySelector('#isolate-form input[name=reason]').value, document.querySelectorAll('header.top nav a, nav.sections a').length > 0]",
            vec![],
        )
        .await
        .expect("form");
    assert_eq!(kept, json!(["console e2e: contain web-01", true]));
    assert_eq!(site.host_field("isolation"), Some("not isolated".into()));
    respond(
        client,
        base,
        "isolate",
        "console e2e: contain web-01",
        "web-01",
    )
    .await;
    command_succeeds(
        client,
        "the isolate command to succeed (followed by the page)",
    )
    .await;
    screenshot(client, "07-isolate-command").await;
    assert_eq!(
        site.reachability(),
        [false; 4],
        "the agent's host is isolated"
    );
    client
        .goto(&format!("{base}/hosts/web-01"))
        .await
        .expect("host page");
    assert_eq!(text(client, "#isolation").await, "isolated");
    wait_for(client, "#release-form", 5).await;
    screenshot(client, "07b-host-isolated").await;

    // The brief of the incident, rendered, with the Markdown and JSON downloads.
    client
        .goto(&format!("{base}/incidents/1/brief"))
        .await
        .expect("brief");
    let brief = text(client, "#report").await;
    assert!(brief.contains("web-01"), "{brief}");
    assert_eq!(
        client
            .execute(
                "return document.querySelectorAll('#report script').length",
                vec![]
            )
            .await
            .expect("count"),
        json!(0)
    );
    // Its tables stay inside the report's box.
    let overflow = client
        .execute(
            "const r = document.querySelector('#report').getBoundingClientRect(); return [...document.querySelectorAll('#report table')].filter(t => t.getBoundingClientRect().right > r.right + 1).length",
            vec![],
        )
        .await
        .expect("overflow");
    assert_eq!(overflow, json!(0), "a brief table runs past its box");
    screenshot(client, "08-brief").await;
    // The incident's timeline names the triage answer by its size and its
    // command, not as cut JSON.
    client
        .goto(&format!("{base}/incidents/1"))
        .await
        .expect("incident");
    let timeline = text(client, "#timeline").await;
    assert!(
        timeline.contains("listeners, ") && timeline.contains("(the table: command c"),
        "{timeline}"
    );
    assert!(!timeline.contains("\"rows\""), "{timeline}");

    // Commands, evidence, and the action log with its verification.
    client
        .goto(&format!("{base}/commands"))
        .await
        .expect("commands");
    assert!(text(client, "table.commands").await.contains("isolate"));
    // The triage answer is a row count linking to its command's page, where it
    // is the same table as on the host page (not raw JSON).
    let answer = client
        .execute(
            "const a = document.querySelector('table.commands a.rows'); return a ? [a.textContent, a.getAttribute('href')] : null",
            vec![],
        )
        .await
        .expect("rows link");
    let href = answer[1]
        .as_str()
        .expect("a triage answer in the queue")
        .to_owned();
    let count: usize = answer[0]
        .as_str()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("N rows");
    assert!(!text(client, "table.commands").await.contains("\"rows\""));
    client
        .goto(&format!("{base}{href}"))
        .await
        .expect("command");
    let rows = client
        .find_all(Locator::Css("#triage-rows tbody tr"))
        .await
        .expect("rows")
        .len();
    assert_eq!(rows, count, "{href}: the answer as a table");
    client
        .goto(&format!("{base}/commands"))
        .await
        .expect("commands");
    screenshot(client, "09-commands").await;
    client
        .goto(&format!("{base}/evidence"))
        .await
        .expect("evidence");
    screenshot(client, "10-evidence").await;
    client
        .goto(&format!("{base}/actions"))
        .await
        .expect("actions");
    let log = text(client, "table.actions").await;
    assert!(
        log.contains("alice") && log.contains("console e2e: contain web-01"),
        "the isolation is in the log as alice's, with her reason"
    );
    // Newest first, and targets are links to what they name.
    let order = client
        .execute(
            "return [...document.querySelectorAll('table.actions tbody tr td:first-child')].map(td => Number(td.textContent))",
            vec![],
        )
        .await
        .expect("seqs");
    let seqs: Vec<u64> = order
        .as_array()
        .expect("array")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    assert!(
        seqs.len() > 1 && seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let links = client
        .execute(
            "return [...document.querySelectorAll('table.actions a')].map(a => a.getAttribute('href'))",
            vec![],
        )
        .await
        .expect("links");
    let links = links.to_string();
    assert!(
        links.contains("\"/hosts/web-01\"") && links.contains("/commands/c"),
        "host and command targets are links: {links}"
    );
    click(client, "#verify-actions").await;
    assert!(
        text(client, "#verify-result").await.contains("verifies"),
        "the action log verifies"
    );
    screenshot(client, "11-actions-verified").await;

    // Refusals: a change without the CSRF token, a request without the session.
    let token = csrf(client).await;
    let (status, body) = fetch(client, "/actions/verify", "", "same-origin").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _) = fetch(
        client,
        "/actions/verify",
        &format!("csrf={token}"),
        "same-origin",
    )
    .await;
    assert_eq!(status, 200, "the same request with the token passes");
    let (status, body) = fetch(client, "/actions/verify", &format!("csrf={token}"), "omit").await;
    assert_eq!(status, 401, "{body}");
    // DNS rebinding: a page on another name that resolves here sends its own Host.
    let addr = base.trim_start_matches("http://");
    for (host, want) in [
        (addr.to_owned(), "401"),
        ("rebind.example:80".to_owned(), "421"),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("GET /findings HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(
            response.starts_with(&format!("HTTP/1.1 {want}")),
            "Host {host}: {}",
            response.lines().next().unwrap_or_default()
        );
    }
    // The console's own refusals are in the action log, as its operator's.
    client
        .goto(&format!("{base}/actions"))
        .await
        .expect("actions");
    let log = text(client, "table.actions").await;
    for needle in [
        "denied.console",
        "POST /actions/verify: the request did not carry this session's CSRF token",
        "not logged in",
        "rebind.example:80",
    ] {
        assert!(
            log.contains(needle),
            "{needle} not in the action log:\n{log}"
        );
    }
    // A hunt started in the browser: an account every host has; live progress,
    // the hit in a filterable table, a CSV download link.
    client.goto(&format!("{base}/hunts")).await.expect("hunts");
    wait_for(client, "#new-hunt select[name=question]", 10)
        .await
        .select_by_value("account")
        .await
        .expect("select");
    fill(client, "#new-hunt input[name=value]", "root").await;
    fill(
        client,
        "#new-hunt input[name=reason]",
        "console e2e: where else",
    )
    .await;
    click(client, "#new-hunt button[type=submit]").await;
    wait_until_js(
        client,
        "return (document.getElementById('hunt-progress')?.textContent || '').startsWith('1/1 answered · 1 with hits')",
        60,
        "the hunt answered, live",
    )
    .await;
    wait_until_js(
        client,
        "return [...document.querySelectorAll('#hunt-hits tbody tr')].some(tr => tr.textContent.includes('web-01') && tr.textContent.includes('root'))",
        30,
        "the hit in the table",
    )
    .await;
    fill(client, "#hunt-filter", "no-such-host").await;
    let visible = client
        .execute(
            "return [...document.querySelectorAll('#hunt-hits tbody tr')].filter(tr => !tr.hidden).length",
            vec![],
        )
        .await
        .expect("visible rows");
    assert_eq!(visible, json!(0), "the filter hides what does not match");
    let csv_link = client
        .execute(
            "return document.getElementById('hunt-csv').getAttribute('href')",
            vec![],
        )
        .await
        .expect("csv link");
    let csv_link = csv_link.as_str().unwrap_or_default().to_owned();
    assert!(csv_link.ends_with("/results.csv"), "{csv_link}");
    let csv = client
        .execute_async(
            "const [path, done] = arguments; fetch(path, {credentials: 'same-origin'}).then(r => r.text()).then(done)",
            vec![json!(csv_link)],
        )
        .await
        .expect("csv");
    let csv = csv.as_str().unwrap_or_default();
    assert!(
        csv.starts_with("host_id,") && csv.contains("web-01") && csv.contains("root"),
        "{csv}"
    );
    // The icon browsers ask for is served (before: a 404 in every session).
    let icon = client
        .execute_async(
            "const [done] = arguments; fetch('/favicon.ico').then(r => r.status + ' ' + r.headers.get('content-type')).then(done)",
            vec![],
        )
        .await
        .expect("favicon");
    assert_eq!(icon.as_str(), Some("200 image/svg+xml"));
    screenshot(client, "12-hunt").await;

    // Search: the hosts that sent a kind of event this host has sent.
    let (_, events, _) = site.cli(&["events", "web-01"]);
    let kind = events[0]["kind"]
        .as_str()
        .expect("an event kind")
        .to_owned();
    client
        .goto(&format!("{base}/search"))
        .await
        .expect("search");
    wait_for(client, "#search-form select[name=field]", 10)
        .await
        .select_by_value("kind")
        .await
        .expect("select");
    fill(client, "#search-form input[name=value]", &kind).await;
    click(client, "#search-button").await;
    wait_until_js(
        client,
        "return [...document.querySelectorAll('#search-hosts tbody tr')].some(tr => tr.textContent.includes('web-01'))",
        30,
        "the host in the search results",
    )
    .await;
    assert!(text(client, "#search-events").await.contains(&kind));
    screenshot(client, "13-search").await;

    // A packet capture from the host page, held as evidence.
    client
        .goto(&format!("{base}/hosts/web-01"))
        .await
        .expect("host page");
    fill(client, "#capture-form input[name=seconds]", "2").await;
    fill(client, "#capture-form input[name=filter]", "tcp port 9001").await;
    fill(
        client,
        "#capture-form input[name=reason]",
        "console e2e: capture",
    )
    .await;
    click(client, "#capture-button").await;
    command_succeeds(client, "the capture to succeed").await;
    assert!(
        text(client, "#command-result")
            .await
            .contains("stored and verified")
    );

    // Release from the host page, as isolation was: reason and the host id.
    respond(client, base, "release", "console e2e: cleaned", "web-01").await;
    command_succeeds(client, "the release command to succeed").await;
    assert_eq!(site.reachability(), [true; 4], "released");
    // The login link works once.
    client.goto(url).await.expect("login again");
    assert!(text(client, "#error").await.contains("used already"));
}

/// A viewer's console: no response buttons, and the API refuses anyway.
async fn viewer_flow(client: &Client, url: &str, base: &str) {
    client.goto(url).await.expect("viewer login");
    assert_eq!(text(client, "#role").await, "viewer");
    client
        .goto(&format!("{base}/hosts/web-01"))
        .await
        .expect("host page");
    wait_for(client, "#no-response", 10).await;
    assert!(
        client
            .find_all(Locator::Css("#isolate-form, #release-form, #triage-form"))
            .await
            .expect("find")
            .is_empty(),
        "a viewer is offered no isolate, release or triage"
    );
    screenshot(client, "12-viewer-host").await;
    let token = csrf(client).await;
    let (status, body) = fetch(
        client,
        "/hosts/web-01/release",
        &format!("csrf={token}&reason=x&confirm=web-01"),
        "same-origin",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs the responder role"), "{body}");
}

#[test]
fn console_in_a_real_browser_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root, bannin_tests::Need::Browser]) {
        return;
    }
    // The listener sensor on: a listener started during the test is a finding
    // that names its pid (the search by pid).
    let site = Site::with(|o| o.net_listener = true);
    // A viewer, registered by the admin.
    let (ok, _, err) = site.cli(&["operator", "add", "victor", "--role", "viewer"]);
    assert!(ok, "{err}");
    let viewer_dir = site.dir.path().join("viewer");
    std::fs::create_dir_all(&viewer_dir).expect("dir");
    let viewer_config = operator_toml(
        &viewer_dir,
        &site.pki.operator("victor"),
        format!("{}:{PORT}", Host::Collector.v4())
            .parse()
            .expect("addr"),
    );
    let (_console, url) = start_console(&site, &site.operator, "alice");
    let base = url.split("/login").next().expect("base").to_owned();
    let (_viewer_console, viewer_url) = start_console(&site, &viewer_config, "victor");
    // The viewer's console under `localhost`: its own cookie jar.
    let viewer_url = viewer_url.replace("127.0.0.1", "localhost");
    let viewer_base = viewer_url.split("/login").next().expect("base").to_owned();
    let ns = site.lab.ns(Host::Collector);
    let driver = Driver::start(
        DRIVER_PORT,
        &["ip", "netns", "exec", &ns],
        &site.dir.path().join("chromedriver.log"),
    );
    std::thread::scope(|scope| {
        let flow = scope.spawn(|| {
            browser::enter_netns(&ns);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = driver.session().await;
                responder_flow(&site, &client, &url, &base).await;
                viewer_flow(&client, &viewer_url, &viewer_base).await;
                let _ = client.close().await;
            });
        });
        if let Err(panic) = flow.join() {
            std::panic::resume_unwind(panic);
        }
    });
}
