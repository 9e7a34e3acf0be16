//! A small W3C WebDriver client: starts `chromedriver` and headless
//! Chromium, and drives pages the way the browser tests need (open, find,
//! click, type, read text, run a script, take a screenshot).
//!
//! Owns the WebDriver wire protocol (JSON over HTTP to the driver, which
//! runs on loopback) and the driver's process. Must not know the pages.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C name of an element reference in a driver's answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session, ended (with its driver) when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

/// An element on the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// session that saves downloads into `downloads`.
    pub fn start(downloads: &Path) -> Browser {
        crate::tools::ensure_chromium();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            agent,
        };
        crate::wait_for("chromedriver to listen", Duration::from_secs(30), || {
            let ready = browser
                .agent
                .get(&format!("{}/status", browser.base))
                .call();
            ready.is_ok().then_some(())
        });
        let session = browser.call(
            "POST",
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                // A node's self-signed API certificate (its portal beyond loopback).
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": chromium(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"],
                    "prefs": {
                        "download.default_directory": downloads,
                        "download.prompt_for_download": false,
                    },
                },
            }}}),
        );
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// A WebDriver command; panics with the driver's message if it fails.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.request(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path} failed: {e}"))
    }

    /// A WebDriver command's value, or the driver's error.
    fn request(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request(method, &url);
        let answer = if method == "GET" || method == "DELETE" {
            request.call()
        } else {
            request.send_json(body)
        };
        let value: Value = match answer {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!("({code}) {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => return Err(e.to_string()),
        };
        Ok(value.get("value").cloned().unwrap_or(Value::Null))
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<Element<'_>> {
        let url = format!("{}/elements", self.base);
        let found: Value = self
            .agent
            .post(&url)
            .send_json(json!({ "using": "css selector", "value": css }))
            .ok()?
            .into_json()
            .ok()?;
        let id = found["value"].as_array()?.first()?[ELEMENT].as_str()?;
        Some(Element {
            browser: self,
            id: id.to_string(),
        })
    }

    /// The first element `css` selects, waited for up to 30 s.
    pub fn wait(&self, css: &str) -> Element<'_> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.find(css) {
                return found;
            }
            if std::time::Instant::now() > deadline {
                let page = self.run("return document.body ? document.body.innerText : '';");
                panic!(
                    "no element {css:?} on {} after 30 s; the page says: {page}",
                    self.url()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the text of the element `css` selects satisfies `ok`;
    /// returns that text. The element may be replaced meanwhile (live
    /// updates swap parts of the page).
    pub fn wait_text(&self, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            let text = self.text_of(css);
            if let Some(t) = text.as_deref().filter(|t| ok(t)) {
                return t.to_string();
            }
            last = text.or(last);
            if std::time::Instant::now() > deadline {
                panic!(
                    "the text of {css:?} on {} after {timeout:?} is {last:?}",
                    self.url()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The rendered text of the first element `css` selects, if any.
    pub fn text_of(&self, css: &str) -> Option<String> {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        let text = self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [css] }),
        );
        text.as_str().map(str::to_string)
    }

    /// Clicks the first element `css` selects, waiting for one (and finding
    /// it again if a live update replaced it before the click landed).
    pub fn click(&self, css: &str) {
        crate::wait_for(
            &format!("a click on {css:?}"),
            Duration::from_secs(30),
            || {
                let id = self.find(css)?.id;
                self.request("POST", &format!("/element/{id}/click"), json!({}))
                    .ok()
            },
        );
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Saves a PNG of the window at `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .expect("valid base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Element<'_> {
    /// Types `text` into the element.
    pub fn type_text(&self, text: &str) {
        self.browser.call(
            "POST",
            &format!("/element/{}/value", self.id),
            json!({ "text": text }),
        );
    }

    /// Its rendered text.
    pub fn text(&self) -> String {
        let text = self
            .browser
            .call("GET", &format!("/element/{}/text", self.id), Value::Null);
        text.as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian's Chromium binary.
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("chromium")
}
