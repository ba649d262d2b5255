//! Column alignment as Go's `text/tabwriter` does it, which is what kubectl's tables
//! (padding 3) and `describe` (padding 2) are laid out with: a column's width is set by the
//! consecutive lines that have a cell in it, so a line without tabs starts a new block.

/// Aligns `lines`, whose cells are separated by `\t`; the last cell of a line is not padded.
pub fn align(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|cells| vec![0; cells.len()]).collect();
    format_block(&lines, &mut widths, 0, lines.len(), 0, padding);
    let mut out = String::new();
    for (cells, widths) in lines.iter().zip(&widths) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Sets the widths of `column` for the lines `start..end`, block by block, then of the next
/// column within each block (Go's tabwriter `format`).
fn format_block(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    start: usize,
    end: usize,
    column: usize,
    padding: usize,
) {
    let mut i = start;
    while i < end {
        // A cell in `column` is terminated (has a tab after it) when the line has more cells.
        if lines[i].len() <= column + 1 {
            i += 1;
            continue;
        }
        let block_start = i;
        let mut width = 0;
        while i < end && lines[i].len() > column + 1 {
            width = width.max(lines[i][column].chars().count() + padding);
            i += 1;
        }
        for w in widths.iter_mut().take(i).skip(block_start) {
            w[column] = width;
        }
        format_block(lines, widths, block_start, i, column + 1, padding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_per_block() {
        let text = "NAME\tREADY\tSTATUS\nweb-1\t1/1\tRunning\nx\t0/1\tPending\n";
        assert_eq!(
            align(text, 3),
            "NAME    READY   STATUS\nweb-1   1/1     Running\nx       0/1     Pending\n"
        );
        let text = "Name:\tweb\nNamespace:\tdefault\nContainers:\n  c:\n    Image:\tx\n";
        assert_eq!(
            align(text, 2),
            "Name:       web\nNamespace:  default\nContainers:\n  c:\n    Image:  x\n"
        );
    }
}
