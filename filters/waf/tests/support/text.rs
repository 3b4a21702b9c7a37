//! Real documentation text turned into the values a user could send: prose
//! split into sentences (inline code, links and markup kept as written),
//! and code-bearing lines (code blocks, HTML lines, man page examples) one
//! by one. Readers for Markdown (READMEs, Rust doc comments) and roff (man
//! pages); neither tries to be complete, only to cut text where a reader
//! would.

#![allow(dead_code)]

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A sentence of prose (or a heading, a list item, a table row).
    Sentence,
    /// A line of a code block, an HTML line, a man page example line.
    Code,
    /// A value given as is (a user's own traffic).
    Given,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sentence => "sentences",
            Kind::Code => "code lines",
            Kind::Given => "values",
        }
    }
}

/// Values shorter than this say too little to test anything.
const MIN_SENTENCE: usize = 20;
const MIN_CODE: usize = 8;
/// Longer values are cut at a character boundary (a comment field's size).
const MAX_VALUE: usize = 1000;

/// Hands a value to `emit` when it is worth testing: whitespace runs become
/// one space, short values and values without a letter are dropped.
fn keep(kind: Kind, text: &str, emit: &mut dyn FnMut(Kind, String)) {
    let mut v = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !v.is_empty() {
            v.push(' ');
        }
        v.push_str(word);
    }
    let min = match kind {
        Kind::Sentence => MIN_SENTENCE,
        Kind::Code => MIN_CODE,
        Kind::Given => 1,
    };
    if v.len() < min || !v.bytes().any(|b| b.is_ascii_alphabetic()) {
        return;
    }
    if v.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    emit(kind, v);
}

/// Abbreviations after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "etc", "vs", "cf", "dr", "mr", "mrs", "ms", "no", "fig", "approx", "resp", "esp",
];

/// Splits a paragraph into sentences: after `.`, `!` or `?` (and any
/// closing quote or bracket) followed by a space and a capital, a digit or
/// markup; never inside inline code, nor after an abbreviation or an
/// initial.
pub fn sentences(paragraph: &str, emit: &mut dyn FnMut(Kind, String)) {
    let bytes = paragraph.as_bytes();
    let mut start = 0;
    let mut in_code = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'`' {
            in_code = !in_code;
        } else if !in_code && matches!(b, b'.' | b'!' | b'?') {
            let mut end = i + 1;
            while end < bytes.len() && matches!(bytes[end], b')' | b'"' | b'\'' | b']' | b'*') {
                end += 1;
            }
            let next = bytes.get(end + 1).copied();
            let spaced = bytes.get(end) == Some(&b' ');
            let opens = next.is_some_and(|n| {
                n.is_ascii_uppercase() || n.is_ascii_digit() || b"`[(\"*<".contains(&n)
            });
            if spaced && opens && !(b == b'.' && after_abbreviation(&paragraph[start..i])) {
                keep(Kind::Sentence, &paragraph[start..end], emit);
                start = end + 1;
                i = end;
            }
        }
        i += 1;
    }
    if start < paragraph.len() {
        keep(Kind::Sentence, &paragraph[start..], emit);
    }
}

fn after_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let word = word.to_ascii_lowercase();
    word.len() == 1 || ABBREVIATIONS.contains(&word.as_str())
}

/// Markdown (a README, a doc comment): fenced and indented code blocks and
/// HTML lines give code lines; headings, list items and table rows are
/// values of their own; paragraphs are split into sentences.
pub fn markdown(text: &str, emit: &mut dyn FnMut(Kind, String)) {
    let mut paragraph = String::new();
    let mut fence: Option<&str> = None;
    let flush = |p: &mut String, emit: &mut dyn FnMut(Kind, String)| {
        if !p.is_empty() {
            sentences(p, emit);
            p.clear();
        }
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            } else {
                keep(Kind::Code, trimmed, emit);
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            flush(&mut paragraph, emit);
            fence = Some(&trimmed[..3]);
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut paragraph, emit);
            continue;
        }
        let indent = line.len() - trimmed.len();
        if paragraph.is_empty() && (indent >= 4 || line.starts_with('\t')) {
            keep(Kind::Code, trimmed, emit);
            continue;
        }
        if trimmed.starts_with('<') {
            flush(&mut paragraph, emit);
            keep(Kind::Code, trimmed, emit);
            continue;
        }
        if let Some(heading) = trimmed.strip_prefix('#') {
            flush(&mut paragraph, emit);
            keep(Kind::Sentence, heading.trim_start_matches('#'), emit);
            continue;
        }
        if trimmed.starts_with('|') {
            flush(&mut paragraph, emit);
            keep(Kind::Sentence, trimmed, emit);
            continue;
        }
        if let Some(item) = list_item(trimmed) {
            flush(&mut paragraph, emit);
            paragraph.push_str(item);
            continue;
        }
        if !paragraph.is_empty() {
            paragraph.push(' ');
        }
        paragraph.push_str(trimmed);
    }
    flush(&mut paragraph, emit);
}

fn list_item(line: &str) -> Option<&str> {
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(marker) {
            return Some(rest);
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits < 4 {
        return line[digits..]
            .strip_prefix(". ")
            .or_else(|| line[digits..].strip_prefix(") "));
    }
    None
}

/// The doc comments (`///`, `//!`) of a Rust source file, each run of
/// comment lines read as Markdown.
pub fn rust_doc_comments(source: &str, emit: &mut dyn FnMut(Kind, String)) {
    let mut block = String::new();
    for line in source.lines() {
        let t = line.trim_start();
        let doc = t
            .strip_prefix("///")
            .filter(|rest| !rest.starts_with('/'))
            .or_else(|| t.strip_prefix("//!"));
        match doc {
            Some(rest) => {
                block.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                block.push('\n');
            }
            None if !block.is_empty() => {
                markdown(&block, emit);
                block.clear();
            }
            None => {}
        }
    }
    if !block.is_empty() {
        markdown(&block, emit);
    }
}

/// A man page's roff source: text lines joined into paragraphs and split
/// into sentences, `.nf`/`.EX` blocks as code lines, font and character
/// escapes resolved, other requests dropped.
pub fn roff(source: &str, emit: &mut dyn FnMut(Kind, String)) {
    let mut paragraph = String::new();
    let mut literal = false;
    let mut in_macro_definition = false;
    let flush = |p: &mut String, emit: &mut dyn FnMut(Kind, String)| {
        if !p.is_empty() {
            sentences(p, emit);
            p.clear();
        }
    };
    for line in source.lines() {
        if in_macro_definition {
            in_macro_definition = line.trim() != "..";
            continue;
        }
        if line.starts_with(".\\\"") || line.starts_with("'\\\"") || line.starts_with("\\\"") {
            continue;
        }
        if let Some(request) = line.strip_prefix('.').or_else(|| line.strip_prefix('\'')) {
            let request = request.trim_start();
            let (name, args) = request
                .split_once(|c: char| c.is_whitespace())
                .unwrap_or((request, ""));
            match name {
                "nf" | "EX" => {
                    flush(&mut paragraph, emit);
                    literal = true;
                }
                "fi" | "EE" => literal = false,
                "de" | "de1" | "am" | "ig" => in_macro_definition = true,
                "SH" | "SS" => {
                    flush(&mut paragraph, emit);
                    keep(Kind::Sentence, &unescape(&unquote(args)), emit);
                }
                "B" | "I" | "SM" | "SB" => append(&mut paragraph, &unescape(&unquote(args))),
                "BR" | "RB" | "IR" | "RI" | "BI" | "IB" => {
                    let joined: String = roff_args(args).concat();
                    append(&mut paragraph, &unescape(&joined));
                }
                "PP" | "P" | "LP" | "TP" | "IP" | "HP" | "sp" | "br" | "RS" | "RE" | "TH"
                | "in" | "ti" | "ne" | "TQ" | "bp"
                    if !literal =>
                {
                    flush(&mut paragraph, emit);
                }
                _ => {}
            }
            continue;
        }
        let text = unescape(line);
        if literal {
            keep(Kind::Code, text.trim(), emit);
        } else if text.trim().is_empty() {
            flush(&mut paragraph, emit);
        } else {
            append(&mut paragraph, text.trim());
        }
    }
    flush(&mut paragraph, emit);
}

fn append(paragraph: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !paragraph.is_empty() {
        paragraph.push(' ');
    }
    paragraph.push_str(text);
}

fn unquote(args: &str) -> String {
    roff_args(args).join(" ")
}

/// A request's arguments: space-separated, `"..."` grouping.
fn roff_args(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in args.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// roff escapes: fonts and sizes dropped, special characters spelled.
fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else { break };
        match e {
            'f' | 's' | 'F' | 'm' => {
                // \fB, \f(CW, \f[CR], \s-1, \s+2, \s0
                match chars.next() {
                    Some('(') => {
                        chars.next();
                        chars.next();
                    }
                    Some('[') => {
                        for c in chars.by_ref() {
                            if c == ']' {
                                break;
                            }
                        }
                    }
                    Some('+') | Some('-') => {
                        chars.next();
                    }
                    _ => {}
                }
            }
            '(' => {
                let name: String = [chars.next(), chars.next()].into_iter().flatten().collect();
                out.push_str(special(&name));
            }
            '[' => {
                let mut name = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    name.push(c);
                }
                out.push_str(special(&name));
            }
            '*' => {
                // A string: \*x, \*(xx, \*[name].
                match chars.next() {
                    Some('(') => {
                        chars.next();
                        chars.next();
                    }
                    Some('[') => {
                        for c in chars.by_ref() {
                            if c == ']' {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            'N' | 'h' | 'v' | 'w' | 'o' | 'X' | 'Z' | 'k' | 'n' | 'l' | 'L' | 'D' | 'x' | 'b' => {
                // A quoted argument ('..'): dropped.
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                }
            }
            '-' => out.push('-'),
            'e' | '\\' => out.push('\\'),
            ' ' | '~' => out.push(' '),
            '&' | '|' | '^' | '%' | ',' | '/' | 'c' | ':' | '{' | '}' | '"' => {}
            '\'' => out.push('\''),
            '`' => out.push('`'),
            '.' => out.push('.'),
            other => out.push(other),
        }
    }
    out
}

fn special(name: &str) -> &'static str {
    match name {
        "em" | "en" | "hy" | "mi" => "-",
        "aq" | "oq" | "cq" | "fm" => "'",
        "dq" | "lq" | "rq" => "\"",
        "bu" | "pc" => "*",
        "lt" | "la" => "<",
        "rt" | "ra" => ">",
        "co" => "(c)",
        "rg" => "(R)",
        "tm" => "(TM)",
        "ga" => "`",
        "ti" | "ap" => "~",
        "ha" | "a^" => "^",
        "rs" => "\\",
        "sl" => "/",
        "ba" | "br" => "|",
        "mu" => "x",
        "de" => " degrees",
        "->" => "->",
        "<-" => "<-",
        "eq" => "=",
        "pl" => "+",
        "sc" => "S",
        "ps" => "P",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: impl Fn(&mut dyn FnMut(Kind, String))) -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        f(&mut |k, v| out.push((k, v)));
        out
    }

    #[test]
    fn sentences_split_where_a_reader_would() {
        let got = collect(|e| {
            sentences(
                "Call `foo.bar(). Baz()` first, then go on. See e.g. the docs for the details. It works as intended!",
                e,
            )
        });
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Call `foo.bar(). Baz()` first, then go on.",
                "See e.g. the docs for the details.",
                "It works as intended!"
            ]
        );
    }

    #[test]
    fn markdown_separates_code_from_prose() {
        let got = collect(|e| {
            markdown(
                "# A heading of some length\n\nSome prose that goes on\nover two lines. And some more text here.\n\n```sh\ncargo add palisade-waf\n```\n<p align=\"center\">\n",
                e,
            )
        });
        assert_eq!(
            got,
            [
                (Kind::Sentence, "A heading of some length".to_string()),
                (
                    Kind::Sentence,
                    "Some prose that goes on over two lines.".to_string()
                ),
                (Kind::Sentence, "And some more text here.".to_string()),
                (Kind::Code, "cargo add palisade-waf".to_string()),
                (Kind::Code, "<p align=\"center\">".to_string()),
            ]
        );
    }

    #[test]
    fn roff_resolves_escapes_and_literal_blocks() {
        let page = ".TH LS 1\n.SH NAME\nls \\- list directory contents\n.PP\nSort entries alphabetically if none of \\fB\\-cftuvSUX\\fR is given.\n.nf\nls \\-l /tmp\n.fi\n";
        let got = collect(|e| roff(page, e));
        assert_eq!(
            got,
            [
                (Kind::Sentence, "ls - list directory contents".to_string()),
                (
                    Kind::Sentence,
                    "Sort entries alphabetically if none of -cftuvSUX is given.".to_string()
                ),
                (Kind::Code, "ls -l /tmp".to_string()),
            ]
        );
    }
}
