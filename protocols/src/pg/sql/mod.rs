//! SQL text helpers: quoting (quote.rs), a small lexer (lexer.rs), statement text for capture
//! and replay (statements.rs), and the cheap looks the tracker takes at passing queries
//! (scan.rs).

mod lexer;
mod quote;
mod reads;
mod scan;
mod statements;

pub use quote::{quote_ident, quote_literal};
pub use reads::{executes_read, plainly_reads, prepares_read};
pub use scan::{
    custom_setting_names, executes, may_begin, may_create_on_commit_delete_rows,
    may_drop_statements, on_commit_delete_rows_table, on_commit_delete_rows_tables, prepares,
    taints_transaction,
};
pub use statements::{is_contained, prepare_name, rewrite_temp_schema, split_statements};
