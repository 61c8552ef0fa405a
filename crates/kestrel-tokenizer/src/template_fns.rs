//! The functions, filters and methods Hugging Face chat templates expect of their Jinja
//! (Python's string and dict methods, `tojson` as Python's `json.dumps` writes it,
//! `strftime_now`), and OpenAI's JSON as template values.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// A JSON value as the template sees it (objects keep their key order).
pub(crate) fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (_, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(from_json).collect::<Vec<_>>()),
        J::Object(o) => Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), from_json(v)))),
    }
}

pub(crate) fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let wd = (days + 4).rem_euclid(7) as usize; // 0 = Sunday
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => {
                let _ = write!(out, "{y}");
            }
            Some('y') => {
                let _ = write!(out, "{:02}", y % 100);
            }
            Some('m') => {
                let _ = write!(out, "{m:02}");
            }
            Some('d') => {
                let _ = write!(out, "{d:02}");
            }
            Some('-') => match it.next() {
                Some('d') => {
                    let _ = write!(out, "{d}");
                }
                Some('m') => {
                    let _ = write!(out, "{m}");
                }
                Some(o) => {
                    out.push_str("%-");
                    out.push(o);
                }
                None => out.push_str("%-"),
            },
            Some('B') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            Some('A') => out.push_str(DAYS[wd]),
            Some('a') => out.push_str(&DAYS[wd][..3]),
            Some('H') => {
                let _ = write!(out, "{h:02}");
            }
            Some('M') => {
                let _ = write!(out, "{mi:02}");
            }
            Some('S') => {
                let _ = write!(out, "{s:02}");
            }
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Python `json.dumps(x, ensure_ascii=False)` style, as HF's `tojson` filter.
pub(crate) fn tojson(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _sort: Option<bool> = kwargs.get("sort_keys")?;
    let _ = kwargs.get::<Option<Value>>("separators")?;
    let _ = kwargs.get::<Option<Value>>("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&v, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    let nl = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * d));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                let _ = write!(out, "{v}");
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                } else if f.fract() == 0.0 && f.abs() < 1e16 {
                    let _ = write!(out, "{f:.1}");
                } else {
                    let _ = write!(out, "{f}");
                }
            }
        }
        ValueKind::String => json_str(v.as_str().unwrap_or(""), out),
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(if indent.is_some() { ',' } else { ',' });
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                nl(out, depth + 1);
                match k.as_str() {
                    Some(s) => json_str(s, out),
                    None => json_str(&k.to_string(), out),
                }
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, depth + 1, out)?;
            }
            nl(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                nl(out, depth + 1);
                write_json(it, indent, depth + 1, out)?;
            }
            nl(out, depth);
            out.push(']');
        }
        _ => json_str(&v.to_string(), out),
    }
    Ok(())
}

fn arg_str(args: &[Value], i: usize) -> Option<String> {
    args.get(i).and_then(|a| {
        if a.is_none() || a.is_undefined() {
            None
        } else {
            a.as_str().map(str::to_string)
        }
    })
}

/// Python string / dict methods that HF templates call (`.strip()`, `.startswith()`, `.items()`).
pub(crate) fn py_methods(
    _state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let chars = arg_str(args, 0);
        let strip_set = |c: char| match &chars {
            Some(set) => set.contains(c),
            None => c.is_whitespace(),
        };
        return Ok(match method {
            "strip" => Value::from(s.trim_matches(strip_set)),
            "lstrip" => Value::from(s.trim_start_matches(strip_set)),
            "rstrip" => Value::from(s.trim_end_matches(strip_set)),
            "upper" => Value::from(s.to_uppercase()),
            "lower" => Value::from(s.to_lowercase()),
            "title" => Value::from(
                s.split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        match c.next() {
                            Some(f) => {
                                f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()
                            }
                            None => String::new(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "capitalize" => {
                let mut c = s.chars();
                Value::from(match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
                    None => String::new(),
                })
            }
            "startswith" => {
                Value::from(arg_str(args, 0).is_some_and(|p| s.starts_with(p.as_str())))
            }
            "endswith" => Value::from(arg_str(args, 0).is_some_and(|p| s.ends_with(p.as_str()))),
            "replace" => {
                let (a, b) = (
                    arg_str(args, 0).unwrap_or_default(),
                    arg_str(args, 1).unwrap_or_default(),
                );
                Value::from(s.replace(a.as_str(), b.as_str()))
            }
            "split" => {
                let parts: Vec<Value> = match arg_str(args, 0) {
                    Some(sep) => s.split(sep.as_str()).map(Value::from).collect(),
                    None => s.split_whitespace().map(Value::from).collect(),
                };
                Value::from(parts)
            }
            "find" => Value::from(
                arg_str(args, 0)
                    .and_then(|p| s.find(p.as_str()))
                    .map_or(-1i64, |i| s[..i].chars().count() as i64),
            ),
            "count" => Value::from(arg_str(args, 0).map_or(0, |p| {
                if p.is_empty() {
                    0
                } else {
                    s.matches(p.as_str()).count()
                }
            })),
            "isdigit" => Value::from(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
            "isspace" => Value::from(!s.is_empty() && s.chars().all(char::is_whitespace)),
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("string has no method '{method}'"),
                ))
            }
        });
    }
    if value.kind() == ValueKind::Map {
        return Ok(match method {
            "items" => {
                let mut v = Vec::new();
                for k in value.try_iter()? {
                    let item = value.get_item(&k)?;
                    v.push(Value::from(vec![k, item]));
                }
                Value::from(v)
            }
            "keys" => Value::from(value.try_iter()?.collect::<Vec<_>>()),
            "values" => {
                let mut v = Vec::new();
                for k in value.try_iter()? {
                    v.push(value.get_item(&k)?);
                }
                Value::from(v)
            }
            "get" => {
                let key = args.first().cloned().unwrap_or(Value::UNDEFINED);
                let item = value.get_item(&key)?;
                if item.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    item
                }
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("map has no method '{method}'"),
                ))
            }
        });
    }
    Err(Error::new(
        ErrorKind::UnknownMethod,
        format!("no method '{method}' on {}", value.kind()),
    ))
}
