//! The extended protocol's side of an answer: Parse, Bind, Describe, Execute and Close of
//! probes through the next Sync (or a Flush), with the unnamed statement and portal they make.

use std::collections::HashMap;

use super::{Answerer, Effect, MAX_REQUEST, body, field};
use crate::pg::frame;
use crate::pg::local::sql::{self, Statement};
use crate::pg::message::{self, tag};
use crate::pg::parse;

pub(super) enum Batch {
    Done(usize),
    Incomplete,
    Server,
}

/// A prepared statement or portal of the batch.
#[derive(Clone)]
struct Prepared {
    statement: Statement,
    /// Result format for the one column, for portals.
    format: i16,
    executed: bool,
}

impl Answerer<'_, '_> {
    /// Parse/Bind/Describe/Execute/Close messages through the next Sync.
    pub(super) fn batch(&mut self, buf: &[u8]) -> Batch {
        let mut unnamed: Option<Prepared> = None;
        let mut portal: Option<Prepared> = None;
        let mut named: HashMap<String, Statement> = HashMap::new();
        let mut closed: Vec<String> = Vec::new();
        let mut off = 0;
        loop {
            let (t, len) = match frame::message_len(&buf[off..], MAX_REQUEST) {
                Ok(Some(m)) => m,
                Ok(None) if off < MAX_REQUEST => return Batch::Incomplete,
                _ => return Batch::Server,
            };
            let b = body(buf, off, len);
            off += len;
            let step = match t {
                tag::SYNC => return Batch::Done(off),
                // The client wants what it asked so far. The next request may go to the
                // server, which must then hold everything this one made: named statements
                // do (the overlay carries them), the unnamed statement and portal don't, and
                // a setting's ParameterStatus would wait for the Sync.
                tag::FLUSH => {
                    if unnamed.is_some() || portal.is_some() || !self.reported.is_empty() {
                        return Batch::Server;
                    }
                    self.flushed = true;
                    return Batch::Done(off);
                }
                tag::PARSE => self.parse(b, &mut unnamed, &mut named, &closed),
                tag::BIND => {
                    let canned = self.view.canned;
                    let known = |name: &str| -> Option<Statement> {
                        if name.is_empty() {
                            return unnamed.as_ref().map(|p| p.statement.clone());
                        }
                        if closed.iter().any(|c| c == name) {
                            return None;
                        }
                        named.get(name).or_else(|| canned.get(name)).cloned()
                    };
                    bind(b, known).map(|p| {
                        portal = Some(p);
                        message::bind_complete(&mut self.reply);
                    })
                }
                tag::DESCRIBE => self.describe(b, unnamed.as_ref(), portal.as_ref(), &named),
                tag::EXECUTE => self.execute_portal(b, portal.as_mut()),
                tag::CLOSE => self.close(b, &mut named, &mut closed),
                _ => None,
            };
            if step.is_none() {
                return Batch::Server;
            }
        }
    }

    fn parse(
        &mut self,
        b: &[u8],
        unnamed: &mut Option<Prepared>,
        named: &mut HashMap<String, Statement>,
        closed: &[String],
    ) -> Option<()> {
        let p = parse::parse_message(b).ok()?;
        if !p.param_types.is_empty() {
            return None;
        }
        let statement = sql::single(p.query);
        if statement == Statement::Other {
            return None;
        }
        self.runs_now(&statement)?;
        if p.name.is_empty() {
            *unnamed = Some(Prepared {
                statement,
                format: 0,
                executed: false,
            });
        } else {
            // Only probes and empty statements are kept by name; a statement of that name
            // existing already is the server's error to give.
            let canned = matches!(statement, Statement::Probe(_) | Statement::Empty);
            let exists = (self.view.canned.contains_key(p.name)
                && !closed.iter().any(|c| c == p.name))
                || named.contains_key(p.name);
            if !canned || exists || self.view.probes_only {
                return None;
            }
            named.insert(p.name.to_string(), statement.clone());
            self.effects.push(Effect::Parsed {
                name: p.name.to_string(),
                query: p.query.to_string(),
                statement,
            });
        }
        message::parse_complete(&mut self.reply);
        Some(())
    }

    fn describe(
        &mut self,
        b: &[u8],
        unnamed: Option<&Prepared>,
        portal: Option<&Prepared>,
        named: &HashMap<String, Statement>,
    ) -> Option<()> {
        let (kind, name) = parse::describe_message(b).ok()?;
        if kind == b'P' {
            if !name.is_empty() {
                return None;
            }
            let p = portal?;
            self.row_description(&p.statement, p.format)?;
        } else {
            let statement = if name.is_empty() {
                unnamed?.statement.clone()
            } else {
                named
                    .get(name)
                    .or_else(|| self.view.canned.get(name))?
                    .clone()
            };
            message::parameter_description(&mut self.reply, &[]);
            self.row_description(&statement, 0)?;
        }
        Some(())
    }

    fn row_description(&mut self, s: &Statement, format: i16) -> Option<()> {
        self.runs_now(s)?;
        match s {
            Statement::Probe(p) => {
                // The value must be known for the Execute that follows anyway.
                self.probe_value(*p)?;
                message::row_description(&mut self.reply, &[field(*p, format)]);
            }
            Statement::Other => return None,
            _ => message::no_data(&mut self.reply),
        }
        Some(())
    }

    fn execute_portal(&mut self, b: &[u8], portal: Option<&mut Prepared>) -> Option<()> {
        let (name, max_rows) = parse::execute_message(b).ok()?;
        let p = portal?;
        // What a second run of a portal returns is left to the server.
        if !name.is_empty() || p.executed {
            return None;
        }
        p.executed = true;
        let (statement, format) = (p.statement.clone(), p.format);
        self.execute(&statement, format, max_rows)
    }

    fn close(
        &mut self,
        b: &[u8],
        named: &mut HashMap<String, Statement>,
        closed: &mut Vec<String>,
    ) -> Option<()> {
        let (kind, name) = parse::close_message(b).ok()?;
        if self.view.probes_only {
            return None;
        }
        if kind == b'S' && !name.is_empty() {
            named.remove(name);
            closed.push(name.to_string());
            self.effects.push(Effect::Closed {
                name: name.to_string(),
            });
        } else if kind == b'P' && !name.is_empty() {
            return None;
        }
        message::close_complete(&mut self.reply);
        Some(())
    }
}

/// A Bind of the unnamed portal to a known statement without parameters.
fn bind(b: &[u8], known: impl Fn(&str) -> Option<Statement>) -> Option<Prepared> {
    let m = parse::bind_message(b).ok()?;
    if !m.portal.is_empty() || !m.params.is_empty() || m.param_formats.len() > 1 {
        return None;
    }
    let statement = known(m.statement)?;
    let columns = usize::from(matches!(statement, Statement::Probe(_)));
    let format = match m.result_formats.as_slice() {
        [] => 0,
        [f] => *f,
        _ => return None,
    };
    if !(format == 0 || format == 1)
        || (m.result_formats.len() > 1 && m.result_formats.len() != columns)
    {
        return None;
    }
    Some(Prepared {
        statement,
        format,
        executed: false,
    })
}
