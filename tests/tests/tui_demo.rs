//! `kasi demo` in a real terminal (tmux): install with `6`, `a`, `y` and watch the Stickiness view
//! reach 100 % and the Config view show the shrink, reading the screen as a person would.

use kasi_e2e::tmux::TmuxSession as Session;
use kasi_e2e::{envoy_binary, kasi_binary};
use std::sync::Mutex;
use std::time::Duration;

/// One demo at a time: each runs a whole lab (two activators with real Envoy sidecars, pods, the
/// API server) beside the UI, and two at once on a 2-core machine slow both past their timeouts.
static ONE_DEMO_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_DEMO_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn demo_installs_with_three_keys_and_shows_it_working() {
    let _one = one_at_a_time();
    let session = start_demo("", "install");

    session.wait_for("the demo guide", Duration::from_secs(30), |s| {
        s.contains("Demo guide")
    });
    session.keys(&["h", "5", "s"]);
    session.wait_for("the probe running", Duration::from_secs(20), |s| {
        s.contains("running (s stops)")
    });

    apply_from_the_ui(&session);

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

    quit(&session);
}

/// Starts `kasi demo` with `args` in a tmux session 160×48 wide, named after the test.
fn start_demo(args: &str, test: &str) -> Session {
    let name = format!("kasi-e2e-{}-{test}", std::process::id());
    let command = format!(
        "{} demo --services 60 --envoy {} {args}; echo KASI-EXITED-$?; sleep 30",
        kasi_binary().display(),
        envoy_binary().display()
    );
    Session::start(&name, &command, 160, 48)
}

/// `6`, `a`, `y`: the install from the UI, until its last step, the activators' rollout.
fn apply_from_the_ui(session: &Session) {
    session.keys(&["6", "a"]);
    session.wait_for("the confirmation", Duration::from_secs(10), |s| {
        s.contains("Apply the bundle?")
    });
    session.keys(&["y"]);
    session.wait_for(
        "the apply and its rollout to finish",
        Duration::from_secs(120),
        |s| s.contains("rolled out"),
    );
}

fn quit(session: &Session) {
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

#[test]
fn the_tour_plays_the_story() {
    let _one = one_at_a_time();
    let session = start_demo("--tour", "tour");
    session.wait_for("the tour's start", Duration::from_secs(30), |s| {
        s.contains("kasi tour · the lab:") && s.contains("activators") && !s.contains("0 pods")
    });

    // 1: the probe runs and the caption quotes its hit rate.
    session.keys(&["Space"]);
    session.wait_for(
        "step 1 with the probe's rate",
        Duration::from_secs(30),
        |s| s.contains("step 1/7") && s.contains("of the time (≈ 1/"),
    );
    // Let the probe pin sessions across the pods for a while.
    std::thread::sleep(Duration::from_secs(6));

    // 2: the all-objects diff.
    session.keys(&["Space"]);
    session.wait_for("the diff", Duration::from_secs(30), |s| {
        s.contains("step 2/7")
            && s.contains("what kasi apply will change (server dry run)")
            && s.contains("### ")
            && s.contains("— created")
    });

    // 3: the apply, then 100 %.
    session.keys(&["Space"]);
    session.wait_for("step 3", Duration::from_secs(10), |s| {
        s.contains("step 3/7")
    });
    session.wait_for(
        "the probe's sessions to stick 100 %",
        Duration::from_secs(150),
        |s| s.contains("installed: the probe's sessions stick 100 %"),
    );

    // 4: the shrink.
    session.keys(&["Space"]);
    session.wait_for("the config shrink", Duration::from_secs(60), |s| {
        s.contains("step 4/7") && s.contains("× smaller")
    });

    // 5: a pod stopped and a session's story.
    session.keys(&["Space"]);
    let screen = session.wait_for("the pod stopped", Duration::from_secs(20), |s| {
        s.contains("step 5/7") && s.contains("sessions rebind with one failure each")
    });
    assert!(
        screen.contains("Session story ·"),
        "no story panel:\n{screen}"
    );
    session.wait_for("the stop's failures", Duration::from_secs(30), |s| {
        !s.contains(" 0 failed so far")
    });

    // 6: the forged cookie, refused.
    session.keys(&["Space"]);
    session.wait_for("the forged cookie refused", Duration::from_secs(10), |s| {
        s.contains("step 6/7") && s.contains("kasi's verdict: refused") && s.contains("REFUSED")
    });

    // 7: the summary's numbers.
    session.keys(&["Space"]);
    let screen = session.wait_for("the summary", Duration::from_secs(10), |s| {
        s.contains("The tour, measured")
    });
    for expected in [
        "before kasi → 100 % after",
        "× smaller",
        "sessions rebound,",
        "169.254.169.254:80: refused",
    ] {
        assert!(screen.contains(expected), "{expected}:\n{screen}");
    }
    if let Ok(path) = std::env::var("KASI_TOUR_SCREEN") {
        let _ = std::fs::write(path, &screen);
    }
    quit(&session);
}

#[test]
fn a_session_timeline_opens_on_the_real_lab() {
    let _one = one_at_a_time();
    let session = start_demo("", "story");
    session.wait_for("the demo guide", Duration::from_secs(30), |s| {
        s.contains("Demo guide")
    });
    // Stories are told from the filter's decision lines: install it first.
    session.keys(&["h"]);
    apply_from_the_ui(&session);
    session.keys(&["5", "s"]);
    session.wait_for("the probe running", Duration::from_secs(20), |s| {
        s.contains("running (s stops)")
    });
    session.keys(&["3"]);
    session.wait_for(
        "a session an activator logged",
        Duration::from_secs(60),
        |s| {
            s.lines()
                .any(|l| l.contains("hello-") && l.contains("cookie") && l.contains("activator-"))
        },
    );
    // A row an activator logged (the probe's own rows have no decision lines), then its story.
    session.keys(&["/", "activator", "Enter", "Enter"]);
    let screen = session.wait_for("the story's headline", Duration::from_secs(10), |s| {
        s.contains("Session story · cookie sessions on") && s.contains("WHEN")
    });
    // The headline says where the session is and why.
    assert!(screen.contains("pod "), "no headline:\n{screen}");
    // Esc closes the story (`q` there closes it too, like k9s' panels), then `q` quits.
    session.keys(&["Escape"]);
    session.wait_for("the story closed", Duration::from_secs(5), |s| {
        !s.contains("Session story")
    });
    quit(&session);
}
