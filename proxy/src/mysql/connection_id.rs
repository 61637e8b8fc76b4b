//! CONNECTION_ID() answers the id torpor gave the client, on whichever backend connection the
//! session is: statement text on its way to a backend has each call replaced by that id
//! (`protocols::mysql::connection_id`). The tracker, the statement store and the snapshot
//! keep the client's own text; the rewrite happens where text leaves for a backend, at every
//! forward and at every replay's prepare, so a statement prepared again after a wake gets it
//! as well.

use bytes::BytesMut;
use protocols::mysql::command::com;
use protocols::mysql::connection_id::rewrite;
use protocols::mysql::packet::{MAX_PAYLOAD, write_packet};
use protocols::mysql::response::status;
use protocols::mysql::snapshot::MySnapshot;

/// Who the client thinks it is, and who the backend connection says it is.
#[derive(Clone, Copy)]
pub(super) struct Ids {
    /// The id of torpor's greeting.
    pub client: u32,
    /// The backend connection's thread id.
    pub backend: u32,
    /// Strings take backslash escapes: NO_BACKSLASH_ESCAPES is off.
    pub backslash: bool,
}

impl Ids {
    /// `status`: the server's last status flags, which say whether NO_BACKSLASH_ESCAPES is on.
    pub(super) fn new(client: u32, backend: u32, status: u16) -> Ids {
        Ids {
            client,
            backend,
            backslash: status & status::NO_BACKSLASH_ESCAPES == 0,
        }
    }

    /// For a replay of `snap` on a new connection whose status is `status`: strings read as
    /// the snapshot's sql_mode reads them once it is set, else as the connection's.
    pub(super) fn for_replay(client: u32, backend: u32, status: u16, snap: &MySnapshot) -> Ids {
        let mut ids = Ids::new(client, backend, status);
        if let Some((_, mode)) = snap.variables.iter().find(|(n, _)| n == "sql_mode") {
            ids.backslash = !mode.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES");
        }
        ids
    }

    /// The command payload `body` with the client's id in place of each CONNECTION_ID(), or
    /// None when it stays as it is: not a COM_QUERY or COM_STMT_PREPARE, nothing to replace,
    /// the backend's id is the client's, or it would no longer fit one packet (a command of
    /// several packets passes on as it arrives).
    pub(super) fn command(self, body: &[u8]) -> Option<Vec<u8>> {
        if self.client == self.backend || body.len() >= MAX_PAYLOAD {
            return None;
        }
        let (&cmd, text) = body.split_first()?;
        if cmd != com::QUERY && cmd != com::STMT_PREPARE {
            return None;
        }
        let text = rewrite(text, self.client, self.backslash)?;
        let mut out = Vec::with_capacity(text.len() + 1);
        out.push(cmd);
        out.extend_from_slice(&text);
        (out.len() < MAX_PAYLOAD).then_some(out)
    }

    /// [`Ids::command`] on a whole one-packet command, header included.
    pub(super) fn packet(self, packet: &mut BytesMut) {
        let Some(new) = packet.get(4..).and_then(|body| self.command(body)) else {
            return;
        };
        let seq = packet[3];
        let mut out = Vec::with_capacity(new.len() + 4);
        write_packet(&mut out, seq, &new);
        packet.clear();
        packet.extend_from_slice(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(body: &[u8]) -> BytesMut {
        let mut out = Vec::new();
        write_packet(&mut out, 0, body);
        BytesMut::from(&out[..])
    }

    #[test]
    fn queries_and_prepares_carry_the_client_id() {
        let ids = Ids::new(1 << 30, 7, status::AUTOCOMMIT);
        let want = b"DO CAST(1073741824 AS UNSIGNED)";
        for cmd in [com::QUERY, com::STMT_PREPARE] {
            let mut p = packet(&[&[cmd][..], b"DO CONNECTION_ID()"].concat());
            ids.packet(&mut p);
            assert_eq!(p[..], packet(&[&[cmd][..], want].concat())[..]);
        }
        // Another command, the same id, or no call: as it was.
        for (ids, body) in [
            (ids, &[&[com::INIT_DB][..], b"connection_id()"].concat()),
            (
                Ids::new(7, 7, 0),
                &[&[com::QUERY][..], b"DO CONNECTION_ID()"].concat(),
            ),
            (ids, &[&[com::QUERY][..], b"SELECT 1"].concat()),
        ] {
            let mut p = packet(body);
            ids.packet(&mut p);
            assert_eq!(p[..], packet(body)[..]);
        }
    }

    #[test]
    fn the_status_says_how_strings_end() {
        let body = [&[com::QUERY][..], br"SELECT '\', CONNECTION_ID()"].concat();
        assert!(Ids::new(1 << 30, 7, 0).command(&body).is_none());
        let off = Ids::new(1 << 30, 7, status::NO_BACKSLASH_ESCAPES);
        assert!(off.command(&body).is_some());
    }

    #[test]
    fn a_replay_reads_strings_as_the_snapshot_sql_mode_does() {
        let mut snap = MySnapshot::default();
        assert!(!Ids::for_replay(1, 2, status::NO_BACKSLASH_ESCAPES, &snap).backslash);
        snap.variables
            .push(("sql_mode".into(), "'STRICT_TRANS_TABLES'".into()));
        assert!(Ids::for_replay(1, 2, status::NO_BACKSLASH_ESCAPES, &snap).backslash);
        snap.variables[0].1 = "'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'".into();
        assert!(!Ids::for_replay(1, 2, 0, &snap).backslash);
    }

    #[test]
    fn a_command_stays_one_packet() {
        let mut body = vec![com::QUERY];
        body.extend_from_slice(b"SELECT CONNECTION_ID() /*");
        body.resize(MAX_PAYLOAD - 10, b' ');
        body.extend_from_slice(b"*/");
        assert!(Ids::new(1 << 30, 7, 0).command(&body).is_none());
    }
}
