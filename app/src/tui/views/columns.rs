//! Tables that fit: each column is as wide as its header and widest cell; when the terminal is
//! narrower, the lowest-priority columns give way first — shrunk (if they may be cut) or left
//! out — and a cell cut to its column ends in `…`, never silently.

use ratatui::layout::Constraint;
use ratatui::style::Style;
use ratatui::text::Text;
use ratatui::widgets::{Row, Table};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Blank columns between two table columns (ratatui's default).
const SPACING: u16 = 1;

/// One column: its header, how important it is, and whether (and down to how narrow) its
/// cells may be cut.
#[derive(Clone, Debug)]
pub struct Column {
    header: String,
    /// Higher is kept longer.
    priority: u8,
    /// `Some(min)`: may shrink to `min` columns, cells ending in `…`; `None`: shown whole or
    /// not at all.
    cut_to: Option<u16>,
}

impl Column {
    pub fn new(header: impl Into<String>, priority: u8) -> Self {
        Self {
            header: header.into(),
            priority,
            cut_to: None,
        }
    }

    /// The column may shrink to `min` columns; its cells then end in `…`.
    pub fn cut_to(mut self, min: u16) -> Self {
        self.cut_to = Some(min);
        self
    }
}

/// What the solver needs of a column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// The header's and the widest cell's display width.
    pub natural: u16,
    pub priority: u8,
    pub cut_to: Option<u16>,
}

/// Each column's width, or `None` when it is left out, for `available` columns of space.
///
/// Columns are taken by priority, highest first, each at its content width if that fits beside
/// those already taken; one that may be cut takes the room left if that is at least its
/// minimum; any other is left out, so a narrow low-priority column can still show where a wide
/// one did not. The most important column always shows, cut to the space there is.
pub fn solve(specs: &[Spec], available: u16) -> Vec<Option<u16>> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    // Stable: among equal priorities the leftmost comes first.
    order.sort_by_key(|&i| std::cmp::Reverse(specs[i].priority));
    let mut widths = vec![None; specs.len()];
    let mut used: u16 = 0;
    for (n, &i) in order.iter().enumerate() {
        let gap = if used == 0 { 0 } else { SPACING };
        let room = available.saturating_sub(used.saturating_add(gap));
        let spec = specs[i];
        let width = if spec.natural <= room {
            spec.natural
        } else if n == 0 || spec.cut_to.is_some_and(|min| min <= room) {
            room
        } else {
            continue;
        };
        widths[i] = Some(width);
        used = used.saturating_add(gap + width);
    }
    widths
}

/// `text` in at most `width` display columns: whole if it fits, else cut with a trailing `…`.
pub fn cut(text: &str, width: u16) -> String {
    let width = width as usize;
    if text.width() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// A cell: its text and style.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Self {
            text: text.into(),
            style,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text,
            style: Style::new(),
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

/// The table's columns sized for `width` (the inside of its block): the header row, the rows
/// with every cell cut to its column, and the constraints to give ratatui.
pub fn fit(
    columns: &[Column],
    rows: Vec<Vec<Cell>>,
    width: u16,
    header_style: Style,
) -> Table<'static> {
    let specs: Vec<Spec> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Spec {
            natural: rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|cell| cell.text.width())
                .chain([c.header.width()])
                .max()
                .unwrap_or(0)
                .min(u16::MAX as usize) as u16,
            priority: c.priority,
            cut_to: c.cut_to,
        })
        .collect();
    let widths = solve(&specs, width);
    let shown = |cells: Vec<(String, Style)>| -> Vec<Text<'static>> {
        cells
            .into_iter()
            .zip(&widths)
            .filter_map(|((text, style), w)| w.map(|w| Text::styled(cut(&text, w), style)))
            .collect()
    };
    let header = Row::new(shown(
        columns
            .iter()
            .map(|c| (c.header.clone(), Style::new()))
            .collect(),
    ))
    .style(header_style);
    let body: Vec<Row> = rows
        .into_iter()
        .map(|r| Row::new(shown(r.into_iter().map(|c| (c.text, c.style)).collect())))
        .collect();
    let constraints: Vec<Constraint> = widths
        .iter()
        .flatten()
        .map(|&w| Constraint::Length(w))
        .collect();
    Table::new(body, constraints)
        .header(header)
        .column_spacing(SPACING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(natural: u16, priority: u8, cut_to: Option<u16>) -> Spec {
        Spec {
            natural,
            priority,
            cut_to,
        }
    }

    #[test]
    fn columns_take_their_content_width_when_there_is_room() {
        let specs = [spec(10, 3, None), spec(5, 1, None), spec(8, 2, Some(4))];
        assert_eq!(solve(&specs, 200), [Some(10), Some(5), Some(8)]);
        // Exactly enough: 10 + 5 + 8 and two gaps.
        assert_eq!(solve(&specs, 25), [Some(10), Some(5), Some(8)]);
    }

    #[test]
    fn a_cuttable_column_takes_the_room_left_down_to_its_minimum() {
        let specs = [spec(10, 3, None), spec(5, 2, None), spec(8, 1, Some(4))];
        assert_eq!(solve(&specs, 25), [Some(10), Some(5), Some(8)]);
        assert_eq!(solve(&specs, 24), [Some(10), Some(5), Some(7)]);
        assert_eq!(solve(&specs, 21), [Some(10), Some(5), Some(4)]);
        // Less than its minimum left: it goes.
        assert_eq!(solve(&specs, 20), [Some(10), Some(5), None]);
    }

    #[test]
    fn a_higher_priority_keeps_its_width_before_a_lower_one_shows() {
        // The pod's name (cuttable) keeps all its width; the lower-priority column goes.
        let specs = [spec(38, 9, Some(16)), spec(25, 2, None), spec(8, 8, None)];
        assert_eq!(solve(&specs, 60), [Some(38), None, Some(8)]);
        // By priority: the name keeps its width before the state shows.
        assert_eq!(solve(&specs, 40), [Some(38), None, None]);
        assert_eq!(solve(&specs, 30), [Some(30), None, None]);
    }

    #[test]
    fn the_lowest_priority_gives_way_and_a_narrower_one_may_still_fit() {
        // A wide low-priority column goes; a narrow one of lower priority still fits.
        let specs = [
            spec(10, 5, None),
            spec(20, 2, None),
            spec(3, 1, None),
            spec(6, 4, None),
        ];
        assert_eq!(solve(&specs, 25), [Some(10), None, Some(3), Some(6)]);
        assert_eq!(solve(&specs, 17), [Some(10), None, None, Some(6)]);
        assert_eq!(solve(&specs, 10), [Some(10), None, None, None]);
    }

    #[test]
    fn the_most_important_column_always_shows_cut() {
        let specs = [spec(40, 1, None), spec(30, 9, None)];
        assert_eq!(solve(&specs, 12), [None, Some(12)]);
        assert_eq!(solve(&[], 12), Vec::<Option<u16>>::new());
        assert_eq!(solve(&specs, 0), [None, Some(0)]);
    }

    #[test]
    fn a_cut_cell_ends_in_an_ellipsis_by_display_width() {
        assert_eq!(cut("new_session", 20), "new_session");
        assert_eq!(cut("new_session", 11), "new_session");
        assert_eq!(cut("new_session", 10), "new_sessi…");
        assert_eq!(cut("new_session", 1), "…");
        assert_eq!(cut("new_session", 0), "");
        // Wide characters count two columns and are never split.
        assert_eq!(cut("日本語です", 6), "日本…");
        assert_eq!(cut("日本語です", 5), "日本…");
        assert_eq!(cut("✔ present", 4), "✔ p…");
    }

    #[test]
    fn fit_leaves_out_and_cuts_cells_to_their_columns() {
        let columns = [
            Column::new("NAME", 9),
            Column::new("STATE", 5),
            Column::new("NOTE", 1).cut_to(4),
        ];
        let rows = vec![vec![
            Cell::from("activator-1"),
            Cell::from("pinned"),
            Cell::from("a long note here"),
        ]];
        let table = fit(&columns, rows, 25, Style::new());
        let mut buffer = ratatui::buffer::Buffer::empty(ratatui::layout::Rect::new(0, 0, 25, 2));
        ratatui::widgets::Widget::render(table, buffer.area, &mut buffer);
        let lines: Vec<String> = (0..2)
            .map(|y| (0..25).map(|x| buffer[(x, y)].symbol()).collect())
            .collect();
        assert_eq!(
            lines,
            ["NAME        STATE  NOTE  ", "activator-1 pinned a lon…"]
        );
    }
}
