//! What keys become. The update step turns actions into state changes and [`Effect`]s, which
//! the runtime carries out off the UI task (applying, stopping a lab pod…).

use super::state::{Confirm, ProbeTarget};
use super::view::View;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Show(View),
    NextView,
    PreviousView,
    Up,
    Down,
    Top,
    Bottom,
    /// `Esc`: close the innermost overlay, else clear the filter.
    Back,
    ToggleHelp,
    ToggleGuide,
    OpenPalette,
    OpenFilter,
    OpenPaste,
    /// A character typed into whichever input is open.
    Type(char),
    Erase,
    Submit,
    Ask(Confirm),
    Answer(bool),
    StopSelectedPod,
    RestoreSelectedPod,
    RestartSelectedSidecar,
    /// `s` in Stickiness: start the cookie probe, or stop whichever probe runs.
    ToggleProbe,
    /// `m` in Stickiness: start the MCP probe (in place of a cookie one), or stop it.
    ToggleMcpProbe,
    /// `Enter` in Sessions: open the selected session's story.
    OpenStory,
    /// `PgUp` / `PgDn` in the diff overlay.
    PageUp,
    PageDown,
    /// `d` (the selected piece) / `D` (every object): the diff of what apply or revert would do.
    ShowDiff {
        all: bool,
    },
    /// `t` in Install: the "would" column and the diff show revert instead of apply, or back.
    ToggleContext,
    /// `L` in Sessions: raise the silent sidecars' `wasm` logger to info for a while.
    RaiseWasmLog,
    /// `space` / `n` in `kasi demo --tour` (or `--auto`'s clock): the tour's next step.
    TourNext,
}

/// Work the runtime does for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ask the server what apply and revert would do (dry runs), reported as preview events.
    Preview,
    Apply,
    Revert,
    StopPod(String),
    RestorePod(String),
    RestartSidecar(String),
    StartProbe(ProbeTarget),
    StopProbe,
    /// Raise these activators' `wasm` logger to info, time-boxed, restoring the level they had.
    RaiseWasmLog(Vec<String>),
    /// `:ctx`: talk to this kubeconfig context from now on (sources restart on it).
    SwitchContext(String),
}
