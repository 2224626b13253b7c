//! Plain-text tables with left-aligned, space-padded columns.

/// Renders `header` and `rows` as aligned columns, each line indented by `indent` spaces; a
/// rule of `-` under the header.
pub fn render_table(header: &[String], rows: &[Vec<String>], indent: usize) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter().take(columns)) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .take(columns)
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("{}{}\n", " ".repeat(indent), padded.join("  ").trim_end())
    };
    let mut out = line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let header = vec!["key".to_string(), "a".to_string()];
        let rows = vec![vec!["long.key".to_string(), "1".to_string()]];
        assert_eq!(
            render_table(&header, &rows, 2),
            "  key       a\n  --------  -\n  long.key  1\n"
        );
    }
}
