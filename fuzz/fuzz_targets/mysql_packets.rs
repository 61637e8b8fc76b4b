//! MySQL/MariaDB packets: the framers (physical packets and reassembled logical ones), every
//! payload parser (greeting, login, auth switch, OK/ERR/EOF, column definitions, rows, prepared
//! statement commands), and the response tracker fed the stream as a conversation: a packet
//! with sequence id 0 is a command the backend will answer, any other a backend packet.
//!
//! Input: one mode byte (bit 0: DEPRECATE_EOF; bit 1: SESSION_TRACK; bit 2: MariaDB's extended
//! type info; bits 4-7: the parameter and column count the statement parsers assume), then the
//! stream. What parses must write back to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::mysql::command::{self, PrepareOk, com};
use protocols::mysql::handshake::{self, AuthSwitch, Handshake, HandshakeResponse, caps};
use protocols::mysql::packet::{self, MAX_PAYLOAD};
use protocols::mysql::response::{self, Column, ErrPacket, OkPacket, status};
use protocols::mysql::response_tracker::{Reply, ResponseTracker};

fuzz_target!(|data: &[u8]| torpor_fuzz::timed(data, run));

fn run(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let capabilities = caps::PROTOCOL_41
        | if mode & 2 != 0 {
            caps::SESSION_TRACK
        } else {
            0
        };
    let count = mode >> 4;
    reassemble(stream);
    let mut tracker = ResponseTracker::new(mode & 1 != 0);
    let mut rest = stream;
    while let Ok(Some(n)) = packet::packet_len(rest, MAX_PAYLOAD) {
        let rows = tracker.rows_prefix(rest);
        assert!(rows <= rest.len());
        let (len, seq) = packet::header(rest).unwrap_or_default();
        assert_eq!(n, 4 + len);
        let payload = &rest[4..n];
        if seq == 0 {
            tracker.expect(reply_to(payload));
        } else {
            let _ = tracker.backend_packet(payload);
        }
        payloads(payload, capabilities, mode & 4 != 0, count);
        rest = &rest[n..];
    }
}

/// The first logical packet, written back, reassembles to the same payload.
fn reassemble(stream: &[u8]) {
    let Ok(Some(logical)) = packet::logical_packet(stream, 1 << 20) else {
        return;
    };
    assert!(logical.consumed <= stream.len());
    let mut out = Vec::new();
    let next = packet::write_packet(&mut out, logical.seq, &logical.payload);
    assert_eq!(next, logical.next_seq);
    let again = packet::logical_packet(&out, 1 << 20);
    assert_eq!(again, Ok(Some(logical)));
}

/// What the backend owes for a command, as the session asks the tracker for it.
fn reply_to(command: &[u8]) -> Reply {
    match command.first().copied() {
        Some(com::QUERY) => Reply::Query,
        Some(com::STMT_EXECUTE) => Reply::Execute,
        Some(com::STMT_FETCH) => Reply::Fetch,
        Some(com::STMT_PREPARE) => Reply::Prepare,
        Some(com::FIELD_LIST) => Reply::FieldList,
        Some(com::STATISTICS) => Reply::Text,
        _ => Reply::Single,
    }
}

fn payloads(p: &[u8], capabilities: u32, extended: bool, count: u8) {
    if let Ok(h) = Handshake::parse(p) {
        let mut out = Vec::new();
        h.write(&mut out);
        let again = Handshake::parse(&out).unwrap_or_else(|e| panic!("{h:?} wrote {e}"));
        assert_eq!(
            (again.server_version, again.connection_id, again.auth_plugin),
            (h.server_version, h.connection_id, h.auth_plugin)
        );
    }
    if let Ok(login) = HandshakeResponse::parse(p) {
        let mut out = Vec::new();
        login.write(&mut out);
        let again = HandshakeResponse::parse(&out).unwrap_or_else(|e| panic!("{login:?}: {e}"));
        assert_eq!(again.username, login.username);
    }
    let _ = handshake::is_ssl_request(p);
    let _ = handshake::auth_more_data(p);
    if let Ok(switch) = AuthSwitch::parse(p) {
        let _ = switch.plugin.len();
    }
    if let Ok(ok) = OkPacket::parse(p, capabilities) {
        let mut out = Vec::new();
        ok.write(p[0], capabilities, &mut out);
        assert_eq!(OkPacket::parse(&out, capabilities).as_ref(), Ok(&ok));
        if let Ok(changes) = response::session_changes(&ok.session_state) {
            let mut out = Vec::new();
            response::write_session_changes(&changes, &mut out);
            assert_eq!(response::session_changes(&out), Ok(changes));
        }
    }
    if let Ok(stripped) = response::strip_session_track(p) {
        let ok = OkPacket::parse(&stripped, caps::PROTOCOL_41)
            .unwrap_or_else(|e| panic!("stripped OK does not parse: {e}"));
        assert_eq!(ok.status & status::SESSION_STATE_CHANGED, 0);
    }
    let _ = ErrPacket::parse(p);
    let _ = response::is_progress_report(p);
    let _ = response::eof(p);
    let _ = response::column_count(p);
    if let Ok(column) = Column::parse_with(p, extended) {
        let mut out = Vec::new();
        column.write(&mut out);
        assert_eq!(Column::parse(&out), Ok(column));
    }
    if let Ok(row) = response::text_row(p, count.into()) {
        let values: Vec<Option<&[u8]>> = row.iter().map(Option::as_deref).collect();
        let mut out = Vec::new();
        response::write_text_row(&values, &mut out);
        assert_eq!(response::text_row(&out, count.into()), Ok(row));
    }
    statement_commands(p, count.into());
}

fn statement_commands(p: &[u8], num_params: u16) {
    if let Ok(prepared) = PrepareOk::parse(p) {
        let mut out = Vec::new();
        prepared.write(&mut out);
        assert_eq!(PrepareOk::parse(&out), Ok(prepared));
    }
    let _ = command::stmt_id(p);
    let _ = command::parse_long_data(p);
    let _ = command::command_text(p);
    if command::parse_execute(p, num_params).is_ok() {
        let types = vec![0xFD; 2 * usize::from(num_params)];
        let typed = command::execute_with_types(p, num_params, &types)
            .unwrap_or_else(|e| panic!("execute_with_types: {e}"));
        let execute = command::parse_execute(&typed, num_params)
            .unwrap_or_else(|e| panic!("typed execute does not parse: {e}"));
        assert!(num_params == 0 || execute.new_params_bound);
    }
}
