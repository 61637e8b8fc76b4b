//! Binary-protocol statements on the way to the backend: the client's statement ids mapped to
//! the backend's, parameter types sent again to a statement a restore prepared anew, long data.

use bytes::BytesMut;
use protocols::mysql::command::{self, cursor};
use protocols::mysql::packet::{MAX_PAYLOAD, write_packet};

use super::conn::{payload, seq};
use super::session::My;
use crate::session::{Error, Step};

impl My {
    pub(super) fn remap_stmt(&mut self, packet: &mut BytesMut) {
        let id = command::stmt_id(payload(packet)).unwrap_or(0);
        self.current.stmt = id;
        if let Some(st) = self.stmts.get(id) {
            command::set_stmt_id(&mut packet[4..], st.backend_id);
        }
    }

    /// Maps the statement id, remembers bound types, and re-sends them to a backend statement
    /// that hasn't seen them (one prepared again by a restore). Returns false when the execute
    /// must not reach the backend: MariaDB 10.11 crashes on an execute without types for a
    /// statement that never had any.
    pub(super) fn rewrite_execute(&mut self, packet: &mut BytesMut) -> Result<bool, Error> {
        let id = command::stmt_id(payload(packet)).unwrap_or(0);
        self.current.stmt = id;
        let Some(st) = self.stmts.get_mut(id) else {
            return Ok(true);
        };
        let exec = command::parse_execute(payload(packet), st.num_params)?;
        self.current.cursor = exec.flags & cursor::READ_ONLY != 0;
        if let Some(types) = exec.types {
            st.types = Some(types.to_vec());
            st.types_unsent = false;
        } else if st.num_params > 0 && st.types_unsent {
            let Some(types) = &st.types else {
                return Ok(false);
            };
            let rewritten = command::execute_with_types(payload(packet), st.num_params, types)?;
            if rewritten.len() >= MAX_PAYLOAD {
                return Ok(false);
            }
            let s = seq(packet);
            let mut out = Vec::with_capacity(rewritten.len() + 4);
            write_packet(&mut out, s, &rewritten);
            packet.clear();
            packet.extend_from_slice(&out);
            st.types_unsent = false;
        }
        // The server forgets long data once the statement runs.
        st.long_data.clear();
        command::set_stmt_id(&mut packet[4..], st.backend_id);
        Ok(true)
    }

    pub(super) async fn on_long_data(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        let (id, param, data) = command::parse_long_data(payload(&packet))?;
        self.changed = true;
        let Some(st) = self.stmts.get_mut(id) else {
            // The server ignores long data for unknown statements until the execute fails.
            return Ok(Step::Continue);
        };
        st.long_data.push((param, data.to_vec()));
        let backend_id = st.backend_id;
        // No answer is due, and a restore re-sends what was recorded: no need to wake.
        if let Some(b) = self.backend.as_mut() {
            command::set_stmt_id(&mut packet[4..], backend_id);
            b.conn.send(&packet).await?;
        }
        Ok(Step::Continue)
    }
}
