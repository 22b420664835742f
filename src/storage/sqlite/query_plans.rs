//! Which index serves which query, shown by SQLite's own `EXPLAIN QUERY PLAN`.
//!
//! Schema v6 of jobs.db and v4 of audit.db dropped the legacy indexes that no query needs
//! (`schema::UNNEEDED_JOBS_INDEXES`, `UNNEEDED_AUDIT_INDEXES`). These tests hold the proof:
//! every query of the library and every query of the legacy app (as its code writes them) keeps
//! the index access it had, and every index left in the files serves at least one of them.

use rusqlite::Connection;

use super::{audit, cache, copy, jobs, schema, set_action};
use crate::model::AuditFilter;

/// A query, who runs it, and how SQLite must reach the rows: `Some(index)` = through that
/// index (or the table's own key), `None` = the query reads the whole table by its nature.
struct Query {
    who: &'static str,
    sql: String,
    via: Option<&'static str>,
}

fn q(who: &'static str, sql: impl Into<String>, via: Option<&'static str>) -> Query {
    Query { who, sql: sql.into(), via }
}

fn jobs_queries() -> Vec<Query> {
    vec![
        q("library: a user's newest jobs", jobs::user_jobs_sql(), Some("idx_jobs_user_created")),
        q("library: does the job exist", jobs::JOB_EXISTS_SQL, Some("sqlite_autoindex_jobs_1")),
        q("library: a job's customers", jobs::JOB_CUSTOMERS_SQL, Some("sqlite_autoindex_job_customers_1")),
        q("library: recover interrupted jobs", set_action::RECOVER_SQL, Some("idx_jobs_in_flight")),
        q("library: a cached status", cache::GET_SQL, Some("sqlite_autoindex_appstatus_cache_1")),
        q("library: invalidate a cid", cache::invalidate_sql(true, false), Some("sqlite_autoindex_appstatus_cache_1")),
        q("library: invalidate a cid's app", cache::invalidate_sql(true, true), Some("sqlite_autoindex_appstatus_cache_1")),
        q("library: copy, jobs in order", copy::EXPORT_JOBS_SQL, Some("sqlite_autoindex_jobs_1")),
        q("library: copy, a job's customers", copy::EXPORT_CUSTOMERS_SQL, Some("sqlite_autoindex_job_customers_1")),
        // The legacy app's jobs.py
        q(
            "legacy: get_user_jobs",
            "SELECT j.*, COUNT(jc.id) AS customer_count FROM jobs j
             LEFT JOIN job_customers jc ON j.job_id = jc.job_id
             WHERE j.user_id = ?1 GROUP BY j.job_id ORDER BY j.created_at DESC LIMIT ?2",
            Some("idx_jobs_user_created"),
        ),
        q(
            "legacy: get_user_jobs, its join",
            "SELECT COUNT(jc.id) FROM jobs j LEFT JOIN job_customers jc ON j.job_id = jc.job_id WHERE j.user_id = ?1",
            Some("sqlite_autoindex_job_customers_1"),
        ),
        q("legacy: get_job_customers", "SELECT cid FROM job_customers WHERE job_id = ?1 ORDER BY cid", Some("sqlite_autoindex_job_customers_1")),
        q("legacy: get_job_details", "SELECT * FROM jobs WHERE job_id = ?1", Some("sqlite_autoindex_jobs_1")),
        q(
            "legacy: get_cached_appstatus",
            "SELECT status_data, cached_at FROM appstatus_cache WHERE cid = ?1 AND app_name = ?2",
            Some("sqlite_autoindex_appstatus_cache_1"),
        ),
        q(
            "legacy: get_cached_appstatus_batch",
            "SELECT cid, status_data, cached_at FROM appstatus_cache WHERE cid IN (?1, ?2) AND app_name = ?3",
            Some("sqlite_autoindex_appstatus_cache_1"),
        ),
        q("legacy: invalidate_appstatus_cache(cid)", "DELETE FROM appstatus_cache WHERE cid = ?1", Some("sqlite_autoindex_appstatus_cache_1")),
        q("legacy: cleanup_expired_cache", "DELETE FROM appstatus_cache WHERE cached_at < ?1", None),
    ]
}

fn audit_queries() -> Vec<Query> {
    let user = AuditFilter { user_id: Some("u"), ..Default::default() };
    let action = AuditFilter { action_type: Some("Trans-Begin"), ..Default::default() };
    let customer = AuditFilter { customer_id: Some("c1"), ..Default::default() };
    vec![
        q("library: the trail", audit::trail_sql(&AuditFilter::default()), Some("idx_timestamp")),
        q("library: a user's trail", audit::trail_sql(&user), Some("idx_user_timestamp")),
        q("library: an action's trail", audit::trail_sql(&action), Some("idx_action_type")),
        // A whole-ID match inside JSON text: no index can serve it (idx_customer_search could not).
        q("library: a customer's trail", audit::trail_sql(&customer), Some("idx_timestamp")),
        q("library: action types", audit::ACTION_TYPES_SQL, Some("idx_action_type")),
        q("library: the chain's head", audit::head_sql(), Some("idx_audit_chain_seq")),
        // The legacy app's audit_db.py
        q("legacy: get_audit_trail", "SELECT * FROM audit_log WHERE 1=1 ORDER BY timestamp DESC LIMIT ?1", Some("idx_timestamp")),
        q(
            "legacy: get_audit_trail(user_id)",
            "SELECT * FROM audit_log WHERE 1=1 AND user_id = ?1 ORDER BY timestamp DESC LIMIT ?2",
            Some("idx_user_timestamp"),
        ),
        q(
            "legacy: get_audit_trail(action_type)",
            "SELECT * FROM audit_log WHERE 1=1 AND action_type = ?1 ORDER BY timestamp DESC LIMIT ?2",
            Some("idx_action_type"),
        ),
        q(
            "legacy: get_audit_trail(customer_id)",
            "SELECT * FROM audit_log WHERE 1=1 AND customer_ids LIKE ?1 ORDER BY timestamp DESC LIMIT ?2",
            Some("idx_timestamp"),
        ),
        q("legacy: get_action_types", "SELECT DISTINCT action_type FROM audit_log ORDER BY action_type", Some("idx_action_type")),
        q("legacy: get_audit_stats", "SELECT COUNT(*) AS success FROM audit_log WHERE status = 'success'", None),
    ]
}

fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap_or_else(|e| panic!("{e}: {sql}"));
    // Parameters stay unbound (NULL): the plan is made before any value is known, as it is
    // for the library's prepared statements.
    let mut rows = stmt.raw_query();
    let mut lines = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        lines.push(row.get::<_, String>(3).unwrap());
    }
    lines.join("\n")
}

fn indexes(conn: &Connection) -> Vec<String> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

fn migrated(which: &str) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    match which {
        "jobs" => schema::migrate_jobs(&conn, true).unwrap(),
        _ => schema::migrate_audit(&conn, true).unwrap(),
    }
    conn
}

/// Each query reaches its rows the way it says; none falls back to a scan it did not have.
fn check_plans(conn: &Connection, queries: &[Query]) {
    for query in queries {
        let plan = plan(conn, &query.sql);
        match query.via {
            Some(index) => assert!(
                plan.contains(&format!("INDEX {index}")),
                "{}: expected {index}, SQLite plans:\n{plan}",
                query.who
            ),
            None => assert!(plan.contains("SCAN"), "{}: {plan}", query.who),
        }
    }
}

/// Every index in the file is what some query reads through.
fn check_every_index_serves(conn: &Connection, queries: &[Query], own_tables: &[&str]) {
    let served: Vec<&str> = queries.iter().filter_map(|q| q.via).collect();
    for index in indexes(conn) {
        // WITHOUT ROWID keys and the outbox's are the tables themselves or used by the library's
        // own bookkeeping tables, not the legacy ones this proof is about.
        if own_tables.iter().any(|t| index.contains(t)) {
            continue;
        }
        assert!(served.contains(&index.as_str()), "{index} serves no query: every write pays for it");
    }
}

#[test]
fn jobs_db_queries_keep_their_indexes_and_every_index_serves_one() {
    let conn = migrated("jobs");
    let queries = jobs_queries();
    check_plans(&conn, &queries);
    check_every_index_serves(&conn, &queries, &["set_action_requests", "audit_outbox"]);
    for dropped in schema::UNNEEDED_JOBS_INDEXES {
        assert!(!indexes(&conn).iter().any(|i| i == dropped), "{dropped} still there");
    }
}

#[test]
fn audit_db_queries_keep_their_indexes_and_every_index_serves_one() {
    let conn = migrated("audit");
    let queries = audit_queries();
    check_plans(&conn, &queries);
    check_every_index_serves(&conn, &queries, &["audit_outbox_receipts"]);
    assert!(!indexes(&conn).iter().any(|i| i == "idx_customer_search"));
}
