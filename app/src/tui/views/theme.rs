//! Colours and symbols, in one place so every view speaks the same language.
//!
//! With `NO_COLOR` set (any non-empty value, per no-color.org) every style is colourless: what
//! a colour said, a modifier says instead — bad is bold, a warning underlined, the selection and
//! alarms reversed — and the ✔/✘ marks carry the rest.

use ratatui::style::{Color, Modifier, Style};
use std::cell::Cell;
use std::sync::OnceLock;

const OK: Color = Color::Green;
const WARN: Color = Color::Yellow;
const BAD: Color = Color::Red;
const DIM: Color = Color::DarkGray;
const ACCENT: Color = Color::Cyan;

/// Whether the UI draws without colour, read once at startup ([`init`]).
static MONOCHROME: OnceLock<bool> = OnceLock::new();

thread_local! {
    /// A test's own choice, so tests running side by side do not share it.
    static OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// What `NO_COLOR`'s value means: colourless when it is set and not empty.
pub fn no_color(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Reads `NO_COLOR` once, before the first frame.
pub fn init() {
    let _ = MONOCHROME.set(no_color(std::env::var_os("NO_COLOR").as_deref()));
}

/// Draws with (`false`) or without (`true`) colour on this thread until `f` returns: for tests.
#[cfg(test)]
pub fn with_monochrome<T>(monochrome: bool, f: impl FnOnce() -> T) -> T {
    let before = OVERRIDE.with(|o| o.replace(Some(monochrome)));
    let result = f();
    OVERRIDE.with(|o| o.set(before));
    result
}

fn monochrome() -> bool {
    OVERRIDE
        .with(Cell::get)
        .unwrap_or_else(|| MONOCHROME.get().copied().unwrap_or(false))
}

/// `colour` as a foreground, or `instead` without colour.
fn paint_or(colour: Color, instead: Modifier) -> Style {
    if monochrome() {
        Style::new().add_modifier(instead)
    } else {
        Style::new().fg(colour)
    }
}

/// A series' or a bar's own colour (charts); plain without colour.
pub fn paint(colour: Color) -> Style {
    paint_or(colour, Modifier::empty())
}

pub fn ok() -> Style {
    paint_or(OK, Modifier::empty())
}

pub fn warn() -> Style {
    paint_or(WARN, Modifier::UNDERLINED)
}

pub fn bad() -> Style {
    paint_or(BAD, Modifier::BOLD)
}

pub fn accent() -> Style {
    paint(ACCENT)
}

/// A line that must be read first (the API is stale, a permission is refused): dark on red or
/// yellow, reversed without colour.
pub fn alarm(bad: bool) -> Style {
    if monochrome() {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    } else {
        Style::new()
            .fg(Color::Black)
            .bg(if bad { BAD } else { WARN })
    }
}

pub fn header() -> Style {
    accent().add_modifier(Modifier::BOLD)
}

pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

pub fn dim() -> Style {
    paint_or(DIM, Modifier::DIM)
}

pub fn good(yes: bool) -> Style {
    if yes {
        ok()
    } else {
        bad()
    }
}

/// Colour for a hit rate: green at 100 %, yellow above 90 %, red below.
pub fn rate(rate: f64) -> Style {
    if rate >= 0.999 {
        ok()
    } else if rate >= 0.9 {
        warn()
    } else {
        bad()
    }
}

pub fn check(yes: bool) -> &'static str {
    if yes {
        "✔"
    } else {
        "✘"
    }
}

/// `1.2 MB`, `140 kB`, `812 B`.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 10_000 => format!("{} kB", n / 1000),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

pub fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".into(), |r| format!("{:.1} %", r * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_means_any_non_empty_value() {
        assert!(!no_color(None));
        assert!(!no_color(Some(OsStr::new(""))));
        assert!(no_color(Some(OsStr::new("1"))));
        assert!(no_color(Some(OsStr::new("false"))));
    }

    #[test]
    fn without_colour_styles_keep_their_meaning_in_modifiers() {
        with_monochrome(true, || {
            for style in [
                ok(),
                warn(),
                bad(),
                dim(),
                header(),
                alarm(true),
                paint(Color::Cyan),
            ] {
                assert_eq!((style.fg, style.bg), (None, None), "{style:?}");
            }
            assert_ne!(bad(), ok());
            assert_ne!(warn(), ok());
            assert!(header().add_modifier.contains(Modifier::BOLD));
        });
        with_monochrome(false, || assert_eq!(bad().fg, Some(Color::Red)));
    }
}
