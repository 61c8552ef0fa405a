//! What the crates that call a kestrel (or other OpenAI-compatible) server over HTTP share:
//! reading its base URL, and an error's full chain of causes for messages.

/// The base of an OpenAI-compatible server, ending in `/v1`, from `http://HOST:PORT` with or
/// without a trailing `/v1` or `/`; or why the URL cannot be one.
pub fn openai_base(url: &str) -> Result<String, &'static str> {
    let trimmed = url.trim_end_matches('/');
    if !trimmed.starts_with("http://") {
        return Err("only http:// URLs are supported (no TLS in this build)");
    }
    if trimmed.len() <= "http://".len() {
        return Err("no host");
    }
    Ok(if trimmed.ends_with("/v1") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1")
    })
}

/// The error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(openai_base("http://h:1").unwrap(), "http://h:1/v1");
        assert_eq!(openai_base("http://h:1/v1/").unwrap(), "http://h:1/v1");
        assert!(openai_base("https://h:1").is_err());
        assert!(openai_base("http://").is_err());
        assert!(openai_base("h:1").is_err());
    }
}
