//! A terminal UI under test in a real terminal (tmux), read as a person reads it.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> Output {
    Command::new("tmux").args(args).output().unwrap_or_else(|e| {
        panic!("tmux is needed for the terminal UI tests ({e}): install it with `apt-get install tmux` (./dev test does)")
    })
}

/// A detached tmux session running one command; killed when dropped.
pub struct TmuxSession(String);

impl TmuxSession {
    /// Starts `command` in a `width`×`height` terminal.
    pub fn start(name: &str, command: &str, width: u16, height: u16) -> TmuxSession {
        let (width, height) = (width.to_string(), height.to_string());
        let status = tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width,
            "-y",
            &height,
            command,
        ]);
        assert!(
            status.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        TmuxSession(name.to_owned())
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &self.0]).stdout).into_owned()
    }

    /// Each key (tmux `send-keys` names: `Enter`, `Escape`, or literal text), with a pause.
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            tmux(&["send-keys", "-t", &self.0, key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until the screen satisfies `check`, failing with the last screen after `within`.
    pub fn wait_for(&self, what: &str, within: Duration, check: impl Fn(&str) -> bool) -> String {
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

impl Drop for TmuxSession {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}
