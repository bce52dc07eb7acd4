//! Headless Chromium driven over the Chrome DevTools Protocol: a browser started with
//! `--remote-debugging-port=0`, one page attached in flat mode over the browser's WebSocket, and
//! the few commands the browser tests need (navigate, evaluate, file inputs, screenshots).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// An error of the browser or the protocol, in words.
pub type CdpResult<T> = Result<T, String>;

/// A headless Chromium with one page; the process is killed when dropped.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
}

/// The flags the browser starts with: headless, no sandbox (root in CI), and none of its
/// background connections (the machines have no outside network).
pub const FLAGS: [&str; 12] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
];

impl Browser {
    /// Starts `chromium` with a fresh profile in `profile_dir` and opens a blank page of
    /// `width` × `height` CSS pixels.
    pub fn start(profile_dir: &Path, width: u32, height: u32) -> CdpResult<Browser> {
        let mut child = Command::new("chromium")
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("chromium could not be started ({e}): install it (apt-get install chromium) or set FER_NO_BROWSER=1"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the DevTools address, then keeps draining stderr so the browser never blocks.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_owned());
                    sent = true;
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                return Err("chromium did not print its DevTools address within 60 s".into());
            }
        };
        let (ws, _) =
            tungstenite::connect(url.as_str()).map_err(|e| format!("connecting to {url}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(120)))
                .map_err(|e| e.to_string())?;
        }
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"].as_str().ok_or("no targetId")?.to_owned();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_owned();
        browser.call("Page.enable", json!({}))?;
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(browser)
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> CdpResult<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = Value::String(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .map_err(|e| format!("{method}: {e}"))?;
        loop {
            let reply = self.ws.read().map_err(|e| format!("{method}: {e}"))?;
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            if v["id"].as_u64() != Some(id) {
                continue; // an event, or another command's answer
            }
            if let Some(err) = v.get("error") {
                return Err(format!("{method}: {err}"));
            }
            return Ok(v["result"].clone());
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> CdpResult<Value> {
        self.send(method, params, None)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> CdpResult<Value> {
        let session = self.session.clone();
        self.send(method, params, Some(session))
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expression: &str) -> CdpResult<Value> {
        let got = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = got.get("exceptionDetails") {
            return Err(format!("`{expression}` threw: {ex}"));
        }
        Ok(got["result"]["value"].clone())
    }

    /// Polls `condition` (a JS expression) until it is true, for at most `timeout`.
    pub fn wait_for(&mut self, condition: &str, timeout: Duration) -> CdpResult<()> {
        let start = Instant::now();
        loop {
            // During a navigation the old context may vanish under the evaluation: retry.
            if let Ok(Value::Bool(true)) = self.eval(condition) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("`{condition}` still false after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `action` (JS that starts a navigation, e.g. a click) and waits until the new page
    /// has loaded completely (images included).
    pub fn navigating(&mut self, action: &str) -> CdpResult<()> {
        self.eval("window.__fer_old_page = true")?;
        self.eval(action)?;
        self.wait_for(
            "window.__fer_old_page === undefined && document.readyState === 'complete'",
            Duration::from_secs(120),
        )
    }

    /// Opens `url` and waits until it has loaded completely.
    pub fn open(&mut self, url: &str) -> CdpResult<()> {
        self.eval("window.__fer_old_page = true")?;
        self.call("Page.navigate", json!({"url": url}))?;
        self.wait_for(
            "window.__fer_old_page === undefined && document.readyState === 'complete'",
            Duration::from_secs(120),
        )
    }

    /// Puts `file` into the `<input type=file>` matched by `selector`.
    pub fn set_file(&mut self, selector: &str, file: &Path) -> CdpResult<()> {
        let doc = self.call("DOM.getDocument", json!({}))?;
        let root = doc["root"]["nodeId"].as_i64().ok_or("no document node")?;
        let node = self.call(
            "DOM.querySelector",
            json!({"nodeId": root, "selector": selector}),
        )?;
        let id = node["nodeId"].as_i64().filter(|id| *id != 0);
        let id = id.ok_or_else(|| format!("no element matches `{selector}`"))?;
        // Chromium grants the page access to exactly this path: give it without `..`.
        let file = file
            .canonicalize()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": id, "files": [file.display().to_string()]}),
        )?;
        Ok(())
    }

    /// A PNG screenshot of the page's viewport.
    pub fn screenshot(&mut self) -> CdpResult<Vec<u8>> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
