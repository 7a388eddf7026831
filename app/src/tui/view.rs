//! The six views, in the order `Tab` and the number keys walk them.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    #[default]
    Overview,
    Endpoints,
    Sessions,
    Config,
    Stickiness,
    Install,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Overview,
        View::Endpoints,
        View::Sessions,
        View::Config,
        View::Stickiness,
        View::Install,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Endpoints => "Endpoints",
            View::Sessions => "Sessions",
            View::Config => "Config",
            View::Stickiness => "Stickiness",
            View::Install => "Install",
        }
    }

    /// The question the view answers, shown under the tabs.
    pub fn question(self) -> &'static str {
        match self {
            View::Overview => "Is it installed, and is every activator's sidecar healthy?",
            View::Endpoints => "Which pods can serve, and how many sessions sit on each?",
            View::Sessions => "Where does each session go?",
            View::Config => "Did the sidecar config shrink?",
            View::Stickiness => "Do requests stick?",
            View::Install => "What will change, and is it applied?",
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// `1`..`6`.
    pub fn from_digit(digit: char) -> Option<View> {
        let n = digit.to_digit(10)? as usize;
        View::ALL.get(n.checked_sub(1)?).copied()
    }

    pub fn next(self) -> View {
        View::ALL[(self.index() + 1) % View::ALL.len()]
    }

    pub fn previous(self) -> View {
        View::ALL[(self.index() + View::ALL.len() - 1) % View::ALL.len()]
    }

    /// Accepts a view name typed in the command palette (`:sessions`, `:cfg`…).
    pub fn from_name(name: &str) -> Option<View> {
        let name = name.trim().to_ascii_lowercase();
        View::ALL.into_iter().find(|v| {
            let title = v.title().to_ascii_lowercase();
            !name.is_empty() && title.starts_with(&name)
        })
    }
}
