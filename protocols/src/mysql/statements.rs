//! Binary-protocol prepared statements. Clients keep the ids they were given for the whole
//! session; the backend's ids change with every new backend connection, so the two are mapped.

use std::collections::BTreeMap;

use super::snapshot::BinaryStatement;
use super::{reads, txn};

/// What a statement's text tells about running it: read once, when it is prepared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Class {
    /// Running it may leave uncommitted changes or row locks in an open transaction.
    pub writes: bool,
    /// Running it can't change what the session holds.
    pub plain: bool,
}

impl Class {
    pub fn of(sql: &str) -> Class {
        Class {
            writes: txn::effect(sql) != txn::TxnEffect::Reads,
            plain: reads::plainly_reads(sql),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Statement {
    /// The id on the current backend connection (stale while parked).
    pub backend_id: u32,
    pub sql: String,
    pub schema: Option<String>,
    pub num_params: u16,
    /// Running it may leave uncommitted changes or row locks in an open transaction.
    pub writes: bool,
    /// Running it can't change what the session holds.
    pub plain: bool,
    /// Parameter types the client bound last (2 bytes per parameter).
    pub types: Option<Vec<u8>>,
    /// The current backend statement hasn't been given parameter types yet (new, or prepared
    /// again by a restore); an execute without types must carry `types`.
    pub types_unsent: bool,
    /// COM_STMT_SEND_LONG_DATA chunks since the last execute or reset.
    pub long_data: Vec<(u16, Vec<u8>)>,
    /// A cursor opened by an execute is not exhausted yet.
    pub cursor_open: bool,
}

#[derive(Debug, Default)]
pub struct Statements {
    next_id: u32,
    by_id: BTreeMap<u32, Statement>,
}

impl Statements {
    /// Registers a statement the backend prepared; returns the id the client gets.
    pub fn add(
        &mut self,
        backend_id: u32,
        sql: String,
        class: Class,
        schema: Option<String>,
        params: u16,
    ) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        while self.by_id.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
        self.by_id.insert(
            self.next_id,
            Statement {
                backend_id,
                writes: class.writes,
                plain: class.plain,
                sql,
                schema,
                num_params: params,
                types: None,
                types_unsent: true,
                long_data: Vec::new(),
                cursor_open: false,
            },
        );
        self.next_id
    }

    pub fn get(&self, id: u32) -> Option<&Statement> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Statement> {
        self.by_id.get_mut(&id)
    }

    pub fn remove(&mut self, id: u32) -> Option<Statement> {
        self.by_id.remove(&id)
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    pub fn any_cursor_open(&self) -> bool {
        self.by_id.values().any(|s| s.cursor_open)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&u32, &mut Statement)> {
        self.by_id.iter_mut()
    }

    /// What a snapshot records, so a restore can prepare them again.
    pub fn snapshot(&self) -> Vec<BinaryStatement> {
        self.by_id
            .iter()
            .map(|(id, s)| BinaryStatement {
                id: *id,
                sql: s.sql.clone(),
                schema: s.schema.clone(),
                num_params: s.num_params,
                param_types: s.types.clone(),
                long_data: s.long_data.clone(),
            })
            .collect()
    }
}
