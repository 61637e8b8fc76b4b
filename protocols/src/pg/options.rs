//! The `options` startup parameter: switches for the server (`-c name=value`,
//! `-cname=value`, `--name=value`), split as the server splits them (whitespace ends a switch
//! unless a backslash escapes it). A proxy takes out a setting meant for itself before the
//! server sees it, and leaves every other switch as the client wrote it.

/// A setting named twice with different values: the client's intent is unclear.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("{name} is given twice in options, as {first:?} and as {second:?}")]
pub struct Conflict {
    pub name: String,
    pub first: String,
    pub second: String,
}

/// Takes every `name=value` switch for `name` (case-insensitive, as setting names are) out of
/// the `options` parameter in `params`, dropping the parameter when nothing else is left in
/// it. The value, if the setting was there.
pub fn take_setting(
    params: &mut Vec<(String, String)>,
    name: &str,
) -> Result<Option<String>, Conflict> {
    let Some(at) = params.iter().position(|(k, _)| k == "options") else {
        return Ok(None);
    };
    let words = split(&params[at].1);
    let mut kept = Vec::new();
    let mut found: Option<String> = None;
    let mut i = 0;
    while i < words.len() {
        let (raw, text) = &words[i];
        // `-c` and its setting are two words; `-cname=value` and `--name=value` one.
        let (setting, used) = match text.as_str() {
            "-c" => (words.get(i + 1).map(|(_, t)| t.clone()), 2),
            t => match (t.strip_prefix("--"), t.strip_prefix("-c")) {
                (Some(long), _) => (Some(long.to_string()), 1),
                (None, Some(short)) => (Some(short.to_string()), 1),
                (None, None) => (None, 1),
            },
        };
        let value = setting.as_deref().and_then(|s| value_of(s, name));
        match value {
            Some(v) => {
                if let Some(first) = &found
                    && *first != v
                {
                    return Err(Conflict {
                        name: name.to_string(),
                        first: first.clone(),
                        second: v,
                    });
                }
                found = Some(v);
                i += used;
            }
            None => {
                kept.push(raw.clone());
                i += 1;
            }
        }
    }
    if found.is_some() {
        if kept.is_empty() {
            params.remove(at);
        } else {
            params[at].1 = kept.join(" ");
        }
    }
    Ok(found)
}

/// The value of `setting` (`name=value`) when its name is `name`.
fn value_of(setting: &str, name: &str) -> Option<String> {
    let (n, v) = setting.split_once('=')?;
    n.eq_ignore_ascii_case(name).then(|| v.to_string())
}

/// The switches in `options`: each as the client wrote it, and as the server reads it.
fn split(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut chars = options.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_ascii_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return words;
        };
        let mut end = options.len();
        let mut text = String::new();
        let mut escaped = false;
        while let Some(&(at, c)) = chars.peek() {
            if c.is_ascii_whitespace() && !escaped {
                end = at;
                break;
            }
            chars.next();
            if !escaped && c == '\\' {
                escaped = true;
            } else {
                escaped = false;
                text.push(c);
            }
        }
        words.push((options[start..end].to_string(), text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(options: &str) -> Params {
        vec![
            ("user".into(), "app".into()),
            ("options".into(), options.into()),
        ]
    }

    type Params = Vec<(String, String)>;

    fn take(options: &str) -> (Result<Option<String>, Conflict>, Params) {
        let mut p = params(options);
        let r = take_setting(&mut p, "torpor.cluster");
        (r, p)
    }

    #[test]
    fn every_spelling_is_taken_and_the_rest_kept_as_written() {
        for (options, left) in [
            ("-c torpor.cluster=a", None),
            ("-ctorpor.cluster=a", None),
            ("--torpor.cluster=a", None),
            ("  -c   TORPOR.Cluster=a  ", None),
            (
                "-c search_path=x\\ y -c torpor.cluster=a -c statement_timeout=5s",
                Some("-c search_path=x\\ y -c statement_timeout=5s"),
            ),
            (
                "--work_mem=64kB --torpor.cluster=a",
                Some("--work_mem=64kB"),
            ),
        ] {
            let (r, p) = take(options);
            assert_eq!(r, Ok(Some("a".into())), "{options}");
            let want = match left {
                Some(l) => params(l),
                None => vec![("user".into(), "app".into())],
            };
            assert_eq!(p, want, "{options}");
        }
    }

    #[test]
    fn other_settings_and_no_options_are_left_alone() {
        for options in ["", "-c search_path=torpor.cluster", "-c torpor.clusters=a"] {
            let (r, p) = take(options);
            assert_eq!(r, Ok(None), "{options}");
            assert_eq!(p, params(options), "{options}");
        }
        let mut none = vec![("user".to_string(), "app".to_string())];
        assert_eq!(take_setting(&mut none, "torpor.cluster"), Ok(None));
        assert_eq!(none.len(), 1);
    }

    #[test]
    fn an_escaped_value_is_read_as_the_server_reads_it() {
        let (r, p) = take("-c torpor.cluster=a\\ b");
        assert_eq!(r, Ok(Some("a b".into())));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn two_different_values_conflict_and_the_same_twice_does_not() {
        let (r, _) = take("-c torpor.cluster=a --torpor.cluster=b");
        assert_eq!(
            r,
            Err(Conflict {
                name: "torpor.cluster".into(),
                first: "a".into(),
                second: "b".into(),
            })
        );
        let (r, p) = take("-c torpor.cluster=a -ctorpor.cluster=a");
        assert_eq!(r, Ok(Some("a".into())));
        assert_eq!(p.len(), 1);
    }
}
