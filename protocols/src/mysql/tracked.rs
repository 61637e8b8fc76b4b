//! What the query stream tells us that the server cannot be asked at checkpoint: which user
//! variable names were used, which temp tables may exist, the text of SQL PREPAREs, GET_LOCK
//! names, and whether LOCK TABLES is in force. Names are candidates: capture checks each with
//! the server, so a name too many costs one question and never a wrong snapshot.

use super::reads;
use super::sql::{self, Effect, PrepareSource};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackedPrepare {
    pub name: String,
    pub source: PrepareSource,
    pub schema: Option<String>,
    /// Its text plainly reads: an EXECUTE of it changes nothing the session holds. Judged
    /// once, at the PREPARE.
    pub reads: bool,
}

#[derive(Default, Clone, Debug)]
pub struct Tracked {
    /// User variable names (case-insensitive in MariaDB; first spelling kept).
    user_vars: Vec<String>,
    /// (schema, table) candidates for temp tables.
    temp_tables: Vec<(String, String)>,
    /// SQL PREPAREs that succeeded and were not deallocated since.
    prepared: Vec<TrackedPrepare>,
    lock_names: Vec<String>,
    table_locks: bool,
}

impl Tracked {
    /// Called by the proxy for every COM_QUERY text once its whole response has been seen.
    /// `schema` = current schema when it ran, `ok` = the response (all results) ended without
    /// ERR.
    pub fn observe(&mut self, sql: &str, schema: Option<&str>, ok: bool) {
        if !sql::worth_scanning(sql) {
            return;
        }
        for effect in sql::sniff(sql) {
            self.apply(effect, schema, ok);
        }
    }

    /// Text of a COM_STMT_PREPARE: its names become candidates (a prepared CREATE TEMPORARY
    /// TABLE or GET_LOCK runs later, at COM_STMT_EXECUTE). Statement-level effects (PREPARE,
    /// LOCK TABLES) are not taken from it: they are not run yet and may never be.
    pub fn observe_prepared(&mut self, sql: &str, schema: Option<&str>) {
        if !sql::worth_scanning(sql) {
            return;
        }
        for effect in sql::sniff(sql) {
            self.candidates(effect, schema);
        }
    }

    /// The SQL prepared statement `name` exists and its text plainly reads.
    pub fn prepared_reads(&self, name: &str) -> bool {
        self.prepared
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .is_some_and(|p| p.reads)
    }

    fn apply(&mut self, effect: Effect, schema: Option<&str>, ok: bool) {
        match effect {
            Effect::Prepare { name, source } => {
                // A PREPARE first drops a statement of the same name, even when it then fails.
                self.prepared
                    .retain(|p| !p.name.eq_ignore_ascii_case(&name));
                if !ok {
                    return;
                }
                // The prepared text may create temp tables or use variables when EXECUTEd.
                if let PrepareSource::Literal(lit) = &source {
                    for inner in sql::sniff(lit.trim_matches(['\'', '"'])) {
                        self.candidates(inner, schema);
                    }
                }
                let reads = matches!(&source, PrepareSource::Literal(l) if reads::literal_reads(l));
                self.prepared.push(TrackedPrepare {
                    name,
                    source,
                    schema: schema.map(str::to_string),
                    reads,
                });
            }
            Effect::Deallocate(name) => {
                if ok {
                    self.prepared
                        .retain(|p| !p.name.eq_ignore_ascii_case(&name));
                }
            }
            // Held is the safe guess when the outcome is unknown: a false "held" only delays
            // a drain until UNLOCK TABLES; a false "free" would lose the locks.
            Effect::LockTables => self.table_locks = true,
            Effect::UnlockTables | Effect::BeginTransaction => {
                if ok {
                    self.table_locks = false;
                }
            }
            other => self.candidates(other, schema),
        }
    }

    fn candidates(&mut self, effect: Effect, schema: Option<&str>) {
        match effect {
            Effect::UserVar(n) if !self.user_vars.iter().any(|v| v.eq_ignore_ascii_case(&n)) => {
                self.user_vars.push(n);
            }
            Effect::TempTable { schema: s, name } => {
                if let Some(s) = s.as_deref().or(schema) {
                    self.add_temp(s, &name);
                }
            }
            Effect::Rename { from, to } => {
                let qualify = |(s, n): &(Option<String>, String)| {
                    s.as_deref().or(schema).map(|s| (s.to_string(), n.clone()))
                };
                if let (Some(f), Some(t)) = (qualify(&from), qualify(&to))
                    && self.temp_tables.contains(&f)
                {
                    self.add_temp(&t.0, &t.1);
                }
            }
            Effect::GetLock(n) if !self.lock_names.contains(&n) => self.lock_names.push(n),
            _ => {}
        }
    }

    fn add_temp(&mut self, schema: &str, name: &str) {
        if !self
            .temp_tables
            .iter()
            .any(|(s, n)| s == schema && n == name)
        {
            self.temp_tables
                .push((schema.to_string(), name.to_string()));
        }
    }

    /// LOCK TABLES held (from LOCK TABLE(S) … until UNLOCK TABLES, or an implicit release such
    /// as START TRANSACTION/BEGIN): a drain blocker.
    pub fn table_locks(&self) -> bool {
        self.table_locks
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER forget everything.
    pub fn reset(&mut self) {
        *self = Tracked::default();
    }

    pub fn user_vars(&self) -> &[String] {
        &self.user_vars
    }

    pub fn temp_tables(&self) -> &[(String, String)] {
        &self.temp_tables
    }

    pub fn prepared(&self) -> &[TrackedPrepare] {
        &self.prepared
    }

    pub fn lock_names(&self) -> &[String] {
        &self.lock_names
    }

    /// After a replay: the same candidates stay valid, and the replayed session holds no
    /// LOCK TABLES (a session holding them is never parked).
    pub fn after_replay(&mut self) {
        self.table_locks = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_candidates() {
        let mut t = Tracked::default();
        t.observe("SET @a = 1, @A = 2", Some("shop"), true);
        t.observe("create temporary table cart (id int)", Some("shop"), true);
        t.observe("create temporary table other.x (id int)", None, true);
        t.observe("create temporary table nodb (id int)", None, false);
        t.observe("alter table cart rename to basket", Some("shop"), true);
        t.observe("select get_lock('job', 0)", Some("shop"), true);
        assert_eq!(t.user_vars(), ["a"]);
        assert_eq!(
            t.temp_tables(),
            [
                ("shop".to_string(), "cart".to_string()),
                ("other".to_string(), "x".to_string()),
                ("shop".to_string(), "basket".to_string())
            ]
        );
        assert_eq!(t.lock_names(), ["job"]);
        t.reset();
        assert!(t.user_vars().is_empty() && t.temp_tables().is_empty());
    }

    #[test]
    fn prepares() {
        let mut t = Tracked::default();
        t.observe("PREPARE s FROM 'SELECT 1'", Some("shop"), true);
        t.observe("PREPARE q FROM @text", None, true);
        assert_eq!(t.prepared().len(), 2);
        // A failed PREPARE of the same name leaves none.
        t.observe("PREPARE s FROM 'SELEKT'", Some("shop"), false);
        assert_eq!(t.prepared().len(), 1);
        t.observe("DEALLOCATE PREPARE Q", None, true);
        assert!(t.prepared().is_empty());
        t.observe(
            "PREPARE c FROM 'CREATE TEMPORARY TABLE tt (a int)'",
            Some("shop"),
            true,
        );
        assert_eq!(t.temp_tables(), [("shop".to_string(), "tt".to_string())]);
        assert_eq!(t.user_vars(), ["text"]);
    }

    #[test]
    fn table_locks() {
        let mut t = Tracked::default();
        t.observe("LOCK TABLES t WRITE", Some("shop"), true);
        assert!(t.table_locks());
        t.observe("UNLOCK TABLES", Some("shop"), true);
        assert!(!t.table_locks());
        t.observe("lock table t read", Some("shop"), true);
        t.observe("start transaction", Some("shop"), true);
        assert!(!t.table_locks());
        t.observe("SELECT 1; LOCK TABLES t READ", Some("shop"), false);
        assert!(t.table_locks());
    }

    #[test]
    fn hot_path_is_cheap() {
        // No effect and no allocation on the common path: the scan must finish quickly even
        // for many calls.
        let mut t = Tracked::default();
        let start = std::time::Instant::now();
        for _ in 0..100_000 {
            t.observe("SELECT 1", Some("shop"), true);
            t.observe("INSERT INTO t VALUES (1)", Some("shop"), true);
        }
        let per_call = start.elapsed() / 200_000;
        assert!(
            per_call < std::time::Duration::from_micros(2),
            "{per_call:?} per call"
        );
        assert!(t.user_vars().is_empty());
    }
}
