//! Python literals as Barman writes them into backup.info: a parser for the subset of
//! `ast.literal_eval` that `repr()` produces (str, int, float, None/True/False, tuple, list,
//! dict) and a printer that reproduces CPython's `repr()` byte for byte.
//!
//! Only what Barman emits is supported: no bytes, sets, complex numbers, string prefixes or
//! implicit concatenation. `repr(str)` follows CPython's `unicode_repr`: single quotes
//! unless the text holds `'` and no `"`, and escapes for non-printable characters. The
//! printable test covers every character class that appears in paths and labels (controls,
//! separators, format characters, private use); unassigned code points (`Cn`) print as is.

use std::fmt::{self, Write as _};

/// A Python value as found in a repr-encoded backup.info field.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` (backup.info never holds one outside the `i64` range).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `tuple`.
    Tuple(Vec<PyValue>),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `dict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
}

/// Why a text is not a supported Python literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Python literal at byte {pos}: {reason}")]
pub struct PyLiteralError {
    /// Byte offset of the problem in the input.
    pub pos: usize,
    /// What was expected.
    pub reason: String,
}

impl PyValue {
    /// Parses one literal, allowing surrounding whitespace (as `ast.literal_eval`).
    pub fn parse(text: &str) -> Result<PyValue, PyLiteralError> {
        let mut parser = Parser { src: text, pos: 0 };
        let value = parser.value()?;
        parser.skip_ws();
        if parser.pos != text.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(value)
    }

    /// The text, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is an `int` or a `float`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The items, if this is a list or a tuple.
    pub fn as_sequence(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(items) | PyValue::Tuple(items) => Some(items),
            _ => None,
        }
    }
}

/// Displays as CPython's `repr()`.
impl fmt::Display for PyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyValue::None => f.write_str("None"),
            PyValue::Bool(true) => f.write_str("True"),
            PyValue::Bool(false) => f.write_str("False"),
            PyValue::Int(i) => write!(f, "{i}"),
            PyValue::Float(x) => f.write_str(&repr_float(*x)),
            PyValue::Str(s) => f.write_str(&repr_str(s)),
            PyValue::Tuple(items) if items.len() == 1 => write!(f, "({},)", items[0]),
            PyValue::Tuple(items) => write_seq(f, "(", items, ")"),
            PyValue::List(items) => write_seq(f, "[", items, "]"),
            PyValue::Dict(pairs) => write_dict(f, pairs),
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[PyValue], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

fn write_dict(f: &mut fmt::Formatter<'_>, pairs: &[(PyValue, PyValue)]) -> fmt::Result {
    f.write_str("{")?;
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{key}: {value}")?;
    }
    f.write_str("}")
}

/// CPython's `repr(float)` (`float_repr_style = 'short'`): the shortest digits that
/// round-trip, positional notation when the decimal exponent is in `-4..16`, otherwise
/// `d.ddde±XX`; integral values end in `.0`.
pub fn repr_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits as `[-]d[.ddd]e<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} output always has an exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let sign = if x.is_sign_negative() { "-" } else { "" };
    // CPython's decpt: the value is 0.DIGITS * 10^decpt.
    let decpt = exp + 1;
    let body =
        if decpt <= -4 || decpt > 16 { exponent_form(&digits, decpt - 1) } else { positional_form(&digits, decpt) };
    format!("{sign}{body}")
}

fn positional_form(digits: &str, decpt: i32) -> String {
    let len = i32::try_from(digits.len()).expect("an f64 has at most 17 significant digits");
    if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt < len {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    } else {
        format!("{digits}{}.0", "0".repeat((decpt - len) as usize))
    }
}

fn exponent_form(digits: &str, exp: i32) -> String {
    let (first, rest) = digits.split_at(1);
    let dot = if rest.is_empty() { String::new() } else { format!(".{rest}") };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{first}{dot}e{sign}{:02}", exp.abs())
}

/// CPython's `repr(str)`.
pub fn repr_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        push_repr_char(&mut out, c, quote);
    }
    out.push(quote);
    out
}

fn push_repr_char(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_printable(c) => out.push(c),
        c if (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32).expect("writing to a String"),
        c if (c as u32) < 0x1_0000 => write!(out, "\\u{:04x}", c as u32).expect("writing to a String"),
        c => write!(out, "\\U{:08x}", c as u32).expect("writing to a String"),
    }
}

/// `str.isprintable()` for one character: false for controls (Cc), format characters (Cf),
/// private use (Co), line/paragraph separators and every space separator but U+0020.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    let control = c.is_control();
    let space_sep = matches!(u, 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000);
    let format = matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private = matches!(u, 0xE000..=0xF8FF | 0xF_0000..=0xF_FFFD | 0x10_0000..=0x10_FFFD);
    let nonchar = matches!(u, 0xFFFE | 0xFFFF);
    !(control || space_sep || format || private || nonchar)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> PyLiteralError {
        PyLiteralError { pos: self.pos, reason: reason.to_owned() }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start_matches([' ', '\t', '\n', '\r', '\x0c']);
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<PyValue, PyLiteralError> {
        self.skip_ws();
        match self.peek() {
            Some('\'' | '"') => self.string().map(PyValue::Str),
            Some('[') => self.sequence(']').map(|(items, _)| PyValue::List(items)),
            Some('(') => self.tuple(),
            Some('{') => self.dict(),
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => self.keyword(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn keyword(&mut self) -> Result<PyValue, PyLiteralError> {
        let word_len = self.rest().find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(self.rest().len());
        let value = match &self.rest()[..word_len] {
            "None" => PyValue::None,
            "True" => PyValue::Bool(true),
            "False" => PyValue::Bool(false),
            _ => return Err(self.error("unsupported name (only None, True, False)")),
        };
        self.pos += word_len;
        Ok(value)
    }

    /// Items up to `close`, with an optional trailing comma; also says whether a comma was
    /// seen (which makes `(x,)` a tuple).
    fn sequence(&mut self, close: char) -> Result<(Vec<PyValue>, bool), PyLiteralError> {
        self.pos += 1; // the opening bracket
        let (mut items, mut comma) = (Vec::new(), false);
        loop {
            if self.eat(close) {
                return Ok((items, comma));
            }
            items.push(self.value()?);
            if self.eat(',') {
                comma = true;
            } else if self.eat(close) {
                return Ok((items, comma));
            } else {
                return Err(self.error(&format!("expected ',' or '{close}'")));
            }
        }
    }

    fn tuple(&mut self) -> Result<PyValue, PyLiteralError> {
        let (mut items, comma) = self.sequence(')')?;
        match (items.len(), comma) {
            // `(x)` is just a parenthesised x.
            (1, false) => Ok(items.remove(0)),
            _ => Ok(PyValue::Tuple(items)),
        }
    }

    fn dict(&mut self) -> Result<PyValue, PyLiteralError> {
        self.pos += 1;
        let mut pairs = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(PyValue::Dict(pairs));
            }
            let key = self.value()?;
            if !self.eat(':') {
                return Err(self.error("expected ':'"));
            }
            pairs.push((key, self.value()?));
            if self.eat('}') {
                return Ok(PyValue::Dict(pairs));
            }
            if !self.eat(',') {
                return Err(self.error("expected ',' or '}'"));
            }
        }
    }

    fn number(&mut self) -> Result<PyValue, PyLiteralError> {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_')))
            .unwrap_or(self.rest().len());
        let src = self.src;
        let mut text = &src[self.pos..self.pos + len];
        // A sign only belongs to the number at its start or right after an exponent mark.
        if let Some(cut) = text
            .char_indices()
            .skip(1)
            .find(|&(i, c)| matches!(c, '+' | '-') && !text[..i].ends_with(['e', 'E']))
            .map(|(i, _)| i)
        {
            text = &text[..cut];
        }
        let clean: String = text.chars().filter(|&c| c != '_').collect();
        self.pos += text.len();
        let is_float = clean.contains(['.', 'e', 'E']);
        let parsed = if is_float {
            clean.parse::<f64>().ok().map(PyValue::Float)
        } else {
            clean.parse::<i64>().ok().map(PyValue::Int)
        };
        parsed.ok_or(PyLiteralError { pos: start, reason: format!("invalid number {text:?}") })
    }

    fn string(&mut self) -> Result<String, PyLiteralError> {
        let quote = self.peek().expect("called on a quote");
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or_else(|| self.error("unterminated string"))?;
            self.pos += c.len_utf8();
            match c {
                '\\' => self.escape(&mut out)?,
                '\n' => return Err(self.error("newline in a string")),
                c if c == quote => return Ok(out),
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), PyLiteralError> {
        let c = self.peek().ok_or_else(|| self.error("unterminated escape"))?;
        self.pos += c.len_utf8();
        let simple = match c {
            '\n' => Some(None),
            '\\' | '\'' | '"' => Some(Some(c)),
            'n' => Some(Some('\n')),
            't' => Some(Some('\t')),
            'r' => Some(Some('\r')),
            'a' => Some(Some('\x07')),
            'b' => Some(Some('\x08')),
            'f' => Some(Some('\x0c')),
            'v' => Some(Some('\x0b')),
            _ => None,
        };
        match (simple, c) {
            (Some(ch), _) => out.extend(ch),
            (None, 'x') => out.push(self.hex_escape(2)?),
            (None, 'u') => out.push(self.hex_escape(4)?),
            (None, 'U') => out.push(self.hex_escape(8)?),
            (None, '0'..='7') => out.push(self.octal_escape(c)?),
            // Python keeps unknown escapes verbatim (with a warning).
            (None, other) => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn hex_escape(&mut self, width: usize) -> Result<char, PyLiteralError> {
        let digits = self.rest().get(..width).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        let code = digits
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("truncated \\x, \\u or \\U escape"))?;
        self.pos += width;
        char::from_u32(code).ok_or_else(|| self.error("escape is not a Unicode scalar value"))
    }

    fn octal_escape(&mut self, first: char) -> Result<char, PyLiteralError> {
        let more = self.rest().chars().take(2).take_while(|c| ('0'..='7').contains(c)).count();
        let text = format!("{first}{}", &self.rest()[..more]);
        self.pos += more;
        let code = u32::from_str_radix(&text, 8).expect("octal digits checked");
        char::from_u32(code).ok_or_else(|| self.error("octal escape out of range"))
    }
}

#[cfg(test)]
#[allow(clippy::unreadable_literal)] // literals mirror the Python repr they must print as
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let value = PyValue::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(value.to_string(), text, "{value:?}");
    }

    #[test]
    fn floats_print_like_cpython_repr() {
        let cases = [
            (1.280923, "1.280923"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1795293400.852009, "1795293400.852009"),
            (1795293400.8651974, "1795293400.8651974"),
            (1795293400.0, "1795293400.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (0.0000123, "1.23e-05"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1e22, "1e+22"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ];
        for (x, want) in cases {
            assert_eq!(repr_float(x), want, "{x:e}");
        }
    }

    #[test]
    fn strings_print_like_cpython_repr() {
        let cases = [
            ("plain", "'plain'"),
            ("it's", "\"it's\""),
            ("both ' and \"", "'both \\' and \"'"),
            ("say \"hi\"", "'say \"hi\"'"),
            ("a\nb\tc\rd\\e", "'a\\nb\\tc\\rd\\\\e'"),
            ("\x00\x1f\x7f", "'\\x00\\x1f\\x7f'"),
            ("caf\u{e9} \u{20ac} \u{1f600}", "'caf\u{e9} \u{20ac} \u{1f600}'"),
            ("nbsp\u{a0}shy\u{ad}", "'nbsp\\xa0shy\\xad'"),
            ("\u{2028}\u{feff}\u{e000}", "'\\u2028\\ufeff\\ue000'"),
            ("\u{e0001}", "'\\U000e0001'"),
            ("", "''"),
        ];
        for (text, want) in cases {
            assert_eq!(repr_str(text), want);
            assert_eq!(PyValue::parse(want), Ok(PyValue::Str(text.to_owned())), "{want}");
        }
    }

    #[test]
    fn parses_escapes_in_either_quote_style() {
        let parsed = PyValue::parse(r#""a\x41\u00e9\U0001F600\101\0\'\"\z""#).expect("parse");
        assert_eq!(parsed, PyValue::Str("aA\u{e9}\u{1f600}A\0'\"\\z".to_owned()));
        assert!(PyValue::parse("'abc").is_err());
        assert!(PyValue::parse("'\\x4'").is_err());
        assert!(PyValue::parse("'a' 'b'").is_err());
    }

    #[test]
    fn containers_round_trip() {
        round_trip("[('tbs1', 16384, '/tmp/bt/tbs1')]");
        round_trip("[('a', 1, '/x'), ('b', 2, '/y')]");
        round_trip("{'copy_time': 1.280923, 'total_time': 1.280923}");
        round_trip("('only',)");
        round_trip("()");
        round_trip("[]");
        round_trip("{}");
        round_trip("{'nested': {'x': [1, -2, 3.5e-07]}, 'flag': True, 'none': None, 'no': False}");
        round_trip("['/etc/postgresql/15/main/conf.d/a.conf', \"it's\"]");
    }

    #[test]
    fn parses_loose_but_valid_python() {
        assert_eq!(PyValue::parse(" ( 1 , ) "), Ok(PyValue::Tuple(vec![PyValue::Int(1)])));
        assert_eq!(PyValue::parse("(1)"), Ok(PyValue::Int(1)));
        assert_eq!(PyValue::parse("[1,2,]"), Ok(PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)])));
        assert_eq!(PyValue::parse("{'a':1,}").map(|v| v.to_string()), Ok("{'a': 1}".to_owned()));
        assert_eq!(PyValue::parse("-1.5e3"), Ok(PyValue::Float(-1500.0)));
        assert_eq!(PyValue::parse("[-1,-2]").map(|v| v.to_string()), Ok("[-1, -2]".to_owned()));
        assert_eq!(PyValue::parse("1_000"), Ok(PyValue::Int(1000)));
        assert!(PyValue::parse("[1 2]").is_err());
        assert!(PyValue::parse("os.system('x')").is_err());
        assert!(PyValue::parse("{'a' 1}").is_err());
        assert!(PyValue::parse("").is_err());
    }
}
