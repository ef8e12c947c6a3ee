//! The inverse of [`super::shell_quote`]: splits a command line as a POSIX shell would split
//! its words, without expanding anything. For a command that arrives as one string (ssh's
//! `SSH_ORIGINAL_COMMAND`) and must be checked word by word before anything runs.

/// Splits `line` into words: blanks separate words; single quotes keep everything
/// literally; double quotes keep everything but `\"`, `\\`, `\$` and `` \` `` escapes; a
/// backslash outside quotes escapes the next character. Refused: unterminated quotes, and
/// any character outside quotes a shell would give a meaning to (`;&|<>()$` `` ` `` `*?[]`
/// `~#!{}` newline) — since nothing is expanded, such a word would not mean what it says.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(q) => w.push(q),
                        None => return Err("unterminated single quote".to_owned()),
                    }
                }
            }
            '"' => double_quoted(&mut chars, word.get_or_insert_with(String::new))?,
            '\\' => match chars.next() {
                Some('\n') | None => return Err("trailing backslash".to_owned()),
                Some(e) => word.get_or_insert_with(String::new).push(e),
            },
            c if "\n;&|<>()$`*?[]~#!{}".contains(c) => return Err(format!("unquoted '{}'", c.escape_default())),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn double_quoted(chars: &mut std::str::Chars<'_>, w: &mut String) -> Result<(), String> {
    loop {
        match chars.next() {
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                Some(e @ ('"' | '\\' | '$' | '`')) => w.push(e),
                Some(e) => {
                    w.push('\\');
                    w.push(e);
                }
                None => return Err("unterminated double quote".to_owned()),
            },
            Some(c @ ('$' | '`')) => return Err(format!("'{c}' inside double quotes")),
            Some(c) => w.push(c),
            None => return Err("unterminated double quote".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::shell_quote;
    use super::*;

    #[test]
    fn splits_as_a_shell_does() {
        assert_eq!(
            split_words("barman --config='/etc/b c.conf' put-wal pg").expect("splits"),
            ["barman", "--config=/etc/b c.conf", "put-wal", "pg"]
        );
        assert_eq!(split_words("  a  \"b \\\" c\"  d\\ e ''").expect("splits"), ["a", "b \" c", "d e", ""]);
        for word in ["pg", "a b", "it's", "$(rm -rf /)", "x;y", "back\\slash"] {
            assert_eq!(split_words(&shell_quote(word)).expect("splits"), [word], "round trip of {word}");
        }
    }

    #[test]
    fn refuses_what_a_shell_would_interpret() {
        for line in ["a;b", "a | b", "a && b", "$(id)", "`id`", "a > f", "pg*", "'open", "\"open", "a\nb", "\"$HOME\""]
        {
            assert!(split_words(line).is_err(), "{line:?} accepted");
        }
    }
}
