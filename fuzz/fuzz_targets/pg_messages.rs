//! PostgreSQL framing and message parsing: a client stream (a startup packet, then tagged
//! frontend messages) or a server stream (tagged backend messages), cut into messages by the
//! framers and each body handed to the parser for its tag. A body that parses must build back
//! to the same bytes where the builders cover the message.
//!
//! Input: one mode byte (bit 0: server stream; bit 1: a 64-byte message limit), then the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocols::pg::frame::{FrameError, MAX_MESSAGE_LEN, message_len, parse_startup, startup_len};
use protocols::pg::message::{self, tag};
use protocols::pg::parse;

fuzz_target!(|data: &[u8]| torpor_fuzz::timed(data, run));

fn run(data: &[u8]) {
    let Some((&mode, mut stream)) = data.split_first() else {
        return;
    };
    let server = mode & 1 != 0;
    let max = if mode & 2 != 0 { 64 } else { MAX_MESSAGE_LEN };
    if !server {
        let Ok(Some(n)) = startup_len(stream) else {
            return;
        };
        let startup = parse_startup(&stream[4..n]);
        if let Ok(packet) = &startup {
            let _ = packet.param("user");
        }
        stream = &stream[n..];
    }
    while let Ok(Some((t, n))) = message_len(stream, max) {
        assert!((5..=stream.len()).contains(&n));
        let (framed, rest) = stream.split_at(n);
        if server {
            backend(t, framed);
        } else {
            frontend(t, framed);
        }
        stream = rest;
    }
}

/// A body that parses builds back, with `build`, to exactly the message it came in.
fn same<T>(framed: &[u8], parsed: Result<T, FrameError>, build: impl FnOnce(&mut BytesMut, T)) {
    if let Ok(parsed) = parsed {
        let mut out = BytesMut::new();
        build(&mut out, parsed);
        assert_eq!(&out[..], framed);
    }
}

fn frontend(t: u8, framed: &[u8]) {
    let body = &framed[5..];
    match t {
        tag::QUERY => same(framed, parse::query_message(body), message::query),
        tag::PARSE => same(framed, parse::parse_message(body), |o, p| {
            message::parse(o, p.name, p.query, &p.param_types)
        }),
        tag::BIND => drop(parse::bind_message(body)),
        tag::DESCRIBE => same(framed, parse::describe_message(body), |o, (kind, name)| {
            message::describe(o, kind, name)
        }),
        tag::CLOSE => same(framed, parse::close_message(body), |o, (kind, name)| {
            message::close(o, kind, name)
        }),
        tag::EXECUTE => same(framed, parse::execute_message(body), |o, (portal, rows)| {
            message::execute(o, portal, rows)
        }),
        tag::PASSWORD => {
            same(
                framed,
                parse::password_message(body),
                message::password_message,
            );
            let _ = parse::sasl_initial_response(body);
        }
        _ => {}
    }
}

fn backend(t: u8, framed: &[u8]) {
    let body = &framed[5..];
    match t {
        tag::AUTHENTICATION => drop(parse::authentication(body)),
        tag::PARAMETER_STATUS => same(framed, parse::parameter_status(body), |o, (k, v)| {
            message::parameter_status(o, &k, &v)
        }),
        tag::BACKEND_KEY_DATA => same(framed, parse::backend_key_data(body), |o, (pid, key)| {
            message::backend_key_data(o, pid, key)
        }),
        tag::READY_FOR_QUERY => same(
            framed,
            parse::ready_for_query(body),
            message::ready_for_query,
        ),
        tag::ERROR_RESPONSE | tag::NOTICE_RESPONSE => drop(parse::error_fields(body)),
        tag::COMMAND_COMPLETE => same(
            framed,
            parse::command_complete(body),
            message::command_complete,
        ),
        tag::NOTIFICATION_RESPONSE => same(
            framed,
            parse::notification_response(body),
            |o, (pid, channel, payload)| message::notification_response(o, pid, channel, payload),
        ),
        tag::DATA_ROW => same(framed, parse::data_row(body), |o, row| {
            message::data_row(o, &row)
        }),
        tag::ROW_DESCRIPTION => same(framed, parse::row_description(body), |o, fields| {
            let fields: Vec<_> = fields.iter().map(field).collect();
            message::row_description(o, &fields)
        }),
        tag::PARAMETER_DESCRIPTION => {
            same(framed, parse::parameter_description(body), |o, types| {
                message::parameter_description(o, &types)
            })
        }
        _ => {}
    }
}

fn field<'a>(f: &parse::FieldDescription<'a>) -> message::Field<'a> {
    message::Field {
        name: f.name,
        table_oid: f.table_oid,
        column: f.column,
        type_oid: f.type_oid,
        type_len: f.type_size,
        type_mod: f.type_modifier,
        format: f.format,
    }
}
