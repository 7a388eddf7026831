//! A cookie-jar user: GETs the URL, keeping whatever cookies the answers set (its jar is its own),
//! as a browser does. The pod that served a request is `x-kasi-pod`, else the address the session
//! cookie names.

use super::board::Slot;
use super::client::UserClient;
use super::report::SessionReport;
use super::ProbeOptions;
use reqwest::cookie::CookieStore as _;
use reqwest::Url;
use std::sync::Arc;

pub async fn user(client: UserClient, url: Url, options: Arc<ProbeOptions>, slot: Slot) {
    let mut report = SessionReport::default();
    for i in 0..options.requests_per_session {
        if !options.go_on(i).await {
            break;
        }
        report.requests += 1;
        match client.http.get(url.clone()).send().await {
            Ok(response) => {
                report.protocol = Some(format!("{:?}", response.version()));
                let ok = response.status().as_u16() < 500;
                let pod = pod_of(&response);
                // Read the body to its end so the connection is reused, as a browser's would be.
                let body = response.bytes().await;
                if ok && body.is_ok() {
                    let previous = report.cookie_address.take();
                    report.cookie_address = session_cookie(&client, &url, &options.cookie_name)
                        .as_deref()
                        .and_then(cookie_address);
                    // A session cookie issued or changed (kasi installed, a pod failed over):
                    // a new session, pinned where this answer came from.
                    if report.cookie_address.is_some() && report.cookie_address != previous {
                        report.new_session();
                    }
                    report.served_by(pod.or_else(|| report.cookie_address.clone()));
                } else {
                    report.failed();
                }
            }
            Err(_) => report.failed(),
        }
        slot.post(&report);
    }
}

/// The `x-kasi-pod` header the lab's pods (and any app that wants to) answer with.
pub(crate) fn pod_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-kasi-pod")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The session cookie the jar would send to `url` now (after a `Max-Age=0`, none).
fn session_cookie(client: &UserClient, url: &Url, name: &str) -> Option<String> {
    let header = client.jar.cookies(url)?;
    let header = header.to_str().ok()?;
    header.split(';').find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// The pod a session cookie names, signed or not.
fn cookie_address(value: &str) -> Option<String> {
    crate::affinity::decode::decode_value(value)
        .ok()
        .map(|(c, _)| c.address.to_string())
}
