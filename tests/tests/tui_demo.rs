//! `kasi demo` in a real terminal (tmux): install with `6`, `a`, `y` and watch the Stickiness view
//! reach 100 % and the Config view show the shrink, reading the screen as a person would.

use kasi_e2e::{envoy_binary, kasi_binary};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> Output {
    Command::new("tmux").args(args).output().unwrap_or_else(|e| {
        panic!("tmux is needed for the terminal UI test ({e}): install it with `apt-get install tmux` (./dev test does)")
    })
}

struct Session(String);

impl Session {
    fn screen(&self) -> String {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &self.0]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            tmux(&["send-keys", "-t", &self.0, key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until the screen satisfies `check`, failing with the last screen after `within`.
    fn wait_for(&self, what: &str, within: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[test]
fn demo_installs_with_three_keys_and_shows_it_working() {
    let name = format!("kasi-e2e-{}", std::process::id());
    let command = format!(
        "{} demo --services 60 --envoy {}; echo KASI-EXITED-$?; sleep 30",
        kasi_binary().display(),
        envoy_binary().display()
    );
    let status = tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "160",
        "-y",
        "48",
        &command,
    ]);
    assert!(
        status.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let session = Session(name);

    session.wait_for("the demo guide", Duration::from_secs(30), |s| {
        s.contains("Demo guide")
    });
    session.keys(&["h", "5", "s"]);
    session.wait_for("the probe running", Duration::from_secs(20), |s| {
        s.contains("running (s stops)")
    });

    session.keys(&["6", "a"]);
    session.wait_for("the confirmation", Duration::from_secs(5), |s| {
        s.contains("Apply the bundle?")
    });
    session.keys(&["y"]);
    // Apply ends with the activators' rollout, its last step.
    session.wait_for(
        "the apply and its rollout to finish",
        Duration::from_secs(90),
        |s| s.contains("rolled out"),
    );

    session.keys(&["5"]);
    session.wait_for(
        "100 % stickiness in the last 10 s",
        Duration::from_secs(60),
        |s| {
            s.lines()
                .filter(|l| l.contains("activator-") && l.contains("100.0 %"))
                .count()
                >= 2
        },
    );
    session.keys(&["4"]);
    session.wait_for("the config shrink", Duration::from_secs(30), |s| {
        s.contains("× smaller")
    });

    session.keys(&["q"]);
    let screen = session.wait_for("kasi to exit", Duration::from_secs(20), |s| {
        s.contains("KASI-EXITED-")
    });
    assert!(
        screen.contains("KASI-EXITED-0"),
        "kasi demo exited with an error:\n{screen}"
    );
    assert!(!screen.contains("panicked"), "{screen}");
}
