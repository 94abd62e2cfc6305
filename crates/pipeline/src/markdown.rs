//! Text from the data (catalogue names) written into the Markdown reports: it must read as
//! the text it is, on one line, whatever it holds. A newline would end a table row, a `|` split
//! a cell, HTML would render (or run, in a viewer that allows it), and control characters
//! would garble a terminal that shows the file.

/// `text` as Markdown inline text: control characters (newlines, tabs, escapes) become one
/// space each, Markdown's punctuation is backslash-escaped, and `<`, `>` and `&` are HTML
/// entities.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if c.is_control() => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_one_cell_of_plain_text() {
        assert_eq!(text("Song 1 — Artist"), "Song 1 — Artist");
        assert_eq!(text("a|b\nc\r\td\u{1b}[31m"), "a\\|b c  d \\[31m");
        assert_eq!(text("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(
            text("**bold** [link](x) `code` #1 & ~x~"),
            "\\*\\*bold\\*\\* \\[link\\](x) \\`code\\` \\#1 &amp; \\~x\\~"
        );
        assert_eq!(text("![img](u)"), "\\!\\[img\\](u)");
    }
}
