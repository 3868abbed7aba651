//! CSV records as every export writes them (the API's streamed exports and the worker's project
//! reports): RFC 4180 (quotes doubled, CRLF) with cells neutralised against formula injection.
//! Plain text formatting, so both the server and the worker use it without knowing each other.

use std::fmt::Display;

/// One CSV record being written: cells separated by commas, ended by CRLF ([`record`]).
pub struct Record<'a> {
    out: &'a mut String,
    first: bool,
}

impl Record<'_> {
    /// A text cell: neutralised (a leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'`
    /// before it, so a spreadsheet shows it as text instead of running it as a formula) and
    /// quoted when it holds a comma, a quote or a line break (quotes doubled).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separator();
        let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
        let quoted = formula || value.contains([',', '"', '\r', '\n']);
        if quoted {
            self.out.push('"');
        }
        if formula {
            self.out.push('\'');
        }
        for part in value.split_inclusive('"') {
            self.out.push_str(part);
            if part.ends_with('"') {
                self.out.push('"');
            }
        }
        if quoted {
            self.out.push('"');
        }
        self
    }

    /// A cell from any displayable value; empty for `None`.
    pub fn cell(&mut self, value: Option<impl Display>) -> &mut Self {
        match value {
            Some(v) => self.text(&v.to_string()),
            None => self.text(""),
        }
    }

    fn separator(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(',');
        }
    }
}

/// Writes one record with `write` to `out`, then the CRLF that ends it.
pub fn record(out: &mut String, write: impl FnOnce(&mut Record<'_>)) {
    let mut record = Record { out, first: true };
    write(&mut record);
    out.push_str("\r\n");
}

/// The header record of `columns`.
pub fn header(out: &mut String, columns: &[&str]) {
    record(out, |r| {
        for column in columns {
            r.text(column);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cells: &[&str]) -> String {
        let mut out = String::new();
        header(&mut out, cells);
        out
    }

    #[test]
    fn cells_are_quoted_as_rfc_4180_says() {
        assert_eq!(line(&["plain", "", "two words"]), "plain,,two words\r\n");
        assert_eq!(
            line(&["a,b", "say \"hi\""]),
            "\"a,b\",\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(
            line(&["line\nbreak", "cr\rlf"]),
            "\"line\nbreak\",\"cr\rlf\"\r\n"
        );
    }

    #[test]
    fn formulas_are_neutralised() {
        for cell in ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"] {
            let out = line(&[cell]);
            assert!(out.starts_with("\"'"), "{cell:?} became {out:?}");
        }
        assert_eq!(
            line(&["=HYPERLINK(\"x\")"]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        assert_eq!(line(&["a=b", "1-2"]), "a=b,1-2\r\n");
    }
}
