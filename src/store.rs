//! SQLite persistence: transaction messages not yet acknowledged (the outbox), transactions
//! with their last meter reading, configuration keys and availability per charger.
//!
//! One thread owns the connection (WAL, `synchronous=FULL`: a commit survives power loss);
//! charger tasks reach it through a [`StoreHandle`]. Changes arrive as [`StoreOp`]s produced by
//! the pure state machine and are committed before the messages they describe are sent
//! (behaviour.md §Delivery guarantees). Requests queued together are committed in one
//! transaction, so many chargers do not cost one fsync each.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// One change to persist, in the order the machine made it.
#[derive(Clone, PartialEq)]
pub enum StoreOp {
    /// A transaction message was queued.
    Enqueue {
        /// Sequence number, unique per charger among live messages.
        seq: u64,
        /// OCPP action.
        action: String,
        /// Payload (transactionId patched at send time).
        payload: Value,
        /// Local transaction the message belongs to.
        local_tx: Option<u64>,
    },
    /// A message was acknowledged or given up.
    Dequeue {
        /// Its sequence number.
        seq: u64,
    },
    /// A message failed and waits for its retry.
    Attempted {
        /// Its sequence number.
        seq: u64,
        /// Failed attempts so far.
        attempts: u32,
    },
    /// A transaction started (or its record changed).
    TxUpsert(SavedTx),
    /// A transaction's record is no longer needed.
    TxForget {
        /// Local id.
        local: u64,
    },
    /// A configuration key was changed by the central system.
    Key {
        /// Key.
        key: String,
        /// New value.
        value: String,
    },
    /// ChangeAvailability (persists across reboots, OCPP §4.9 / §5.2).
    Unavailable(bool),
    /// The installed charging profiles, whole (errata 3.37: they survive reboots).
    Profiles(Value),
    /// The total kept for a per-session energy register ([`crate::charger::SessionEnergy`]).
    SessionEnergy {
        /// Wh of the sessions before the one the register counts now.
        base: f64,
        /// The register's last value.
        raw: f64,
    },
}

/// Shows a stored configuration value, except the write-only `AuthorizationKey` (SWP §3.1:
/// never logged), whose value is replaced by `***`.
fn shown_value<'a>(key: &str, value: &'a str) -> &'a str {
    if key.eq_ignore_ascii_case(crate::security::AUTHORIZATION_KEY) {
        "***"
    } else {
        value
    }
}

impl std::fmt::Debug for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreOp::Enqueue {
                seq,
                action,
                payload,
                local_tx,
            } => f
                .debug_struct("Enqueue")
                .field("seq", seq)
                .field("action", action)
                .field("payload", payload)
                .field("local_tx", local_tx)
                .finish(),
            StoreOp::Dequeue { seq } => f.debug_struct("Dequeue").field("seq", seq).finish(),
            StoreOp::Attempted { seq, attempts } => f
                .debug_struct("Attempted")
                .field("seq", seq)
                .field("attempts", attempts)
                .finish(),
            StoreOp::TxUpsert(tx) => f.debug_tuple("TxUpsert").field(tx).finish(),
            StoreOp::TxForget { local } => {
                f.debug_struct("TxForget").field("local", local).finish()
            }
            StoreOp::Key { key, value } => f
                .debug_struct("Key")
                .field("key", key)
                .field("value", &shown_value(key, value))
                .finish(),
            StoreOp::Unavailable(u) => f.debug_tuple("Unavailable").field(u).finish(),
            StoreOp::Profiles(p) => f.debug_tuple("Profiles").field(p).finish(),
            StoreOp::SessionEnergy { base, raw } => f
                .debug_struct("SessionEnergy")
                .field("base", base)
                .field("raw", raw)
                .finish(),
        }
    }
}

impl std::fmt::Debug for SavedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<(&str, &str)> = self
            .keys
            .iter()
            .map(|(k, v)| (k.as_str(), shown_value(k, v)))
            .collect();
        f.debug_struct("SavedState")
            .field("outbox", &self.outbox)
            .field("transactions", &self.transactions)
            .field("keys", &keys)
            .field("unavailable", &self.unavailable)
            .field("clean_shutdown", &self.clean_shutdown)
            .field("known", &self.known)
            .field("profiles", &self.profiles)
            .field("session_energy", &self.session_energy)
            .finish()
    }
}

/// The stored form of one transaction.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedTx {
    /// Local id (per charger).
    pub local: u64,
    /// `Some(id)` once the central system assigned it; `Some(-1)` when StartTransaction was
    /// given up (errata 3.18); `None` while unanswered.
    pub ocpp_id: Option<i32>,
    /// idTag.
    pub id_tag: String,
    /// meterStart in Wh.
    pub meter_start: i64,
    /// Start time (RFC 3339).
    pub started: String,
    /// Still running.
    pub open: bool,
    /// Still authorised (StartTransaction.conf accepted or not yet answered).
    pub authorized: bool,
    /// Last energy register value seen during the transaction, Wh.
    pub last_meter: i64,
    /// Transaction.Begin values for StopTransaction.transactionData.
    pub begin: Value,
}

/// A queued message as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedMessage {
    /// Sequence number.
    pub seq: u64,
    /// OCPP action.
    pub action: String,
    /// Payload.
    pub payload: Value,
    /// Local transaction.
    pub local_tx: Option<u64>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Everything stored for one charger.
#[derive(Clone, Default, PartialEq)]
pub struct SavedState {
    /// Queued transaction messages in order.
    pub outbox: Vec<SavedMessage>,
    /// Transactions still referenced (open, or with queued messages).
    pub transactions: Vec<SavedTx>,
    /// Configuration keys changed by the central system.
    pub keys: Vec<(String, String)>,
    /// Set Inoperative by ChangeAvailability.
    pub unavailable: bool,
    /// Whether the gateway stopped cleanly last time (Reboot vs PowerLoss).
    pub clean_shutdown: bool,
    /// Whether anything was stored before (false on first start).
    pub known: bool,
    /// The installed charging profiles as last stored.
    pub profiles: Option<Value>,
    /// `(base, raw)` of a per-session energy register, as last stored.
    pub session_energy: Option<(f64, f64)>,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored document could not be read back.
    #[error("state database holds an unreadable record: {0}")]
    Corrupt(String),
    /// The store thread is gone.
    #[error("the state database task has stopped")]
    Closed,
    /// The file could not be created.
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Schema migrations; `PRAGMA user_version` holds how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE outbox (
         charger TEXT NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL,
         local_tx INTEGER, attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (charger, seq));
     CREATE TABLE transactions (
         charger TEXT NOT NULL, local INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (charger, local));
     CREATE TABLE config_keys (
         charger TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (charger, key));
     CREATE TABLE chargers (
         charger TEXT PRIMARY KEY, unavailable INTEGER NOT NULL DEFAULT 0, clean INTEGER NOT NULL DEFAULT 1);",
    // 2: charging profiles (smart charging).
    "CREATE TABLE charging_profiles (charger TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    // 3: the running total of a per-session energy register.
    "CREATE TABLE session_energy (charger TEXT PRIMARY KEY, base REAL NOT NULL, raw REAL NOT NULL);",
];

/// The database, owned by one thread.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating and migrating) `state_dir/chargebridge.sqlite`.
    ///
    /// # Errors
    /// The directory or database cannot be created, or a migration fails.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(state_dir.join("chargebridge.sqlite"))?;
        Self::init(conn)
    }

    /// An in-memory store for tests.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        // WAL + FULL: every commit is on disk before the message it describes goes out.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version = self.version()?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
            tracing::info!(version = i + 1, "state database migrated");
        }
        Ok(())
    }

    /// The schema version.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn version(&self) -> Result<usize, StoreError> {
        let v: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    /// Loads one charger's state and marks it as running (an unclean stop from now on until
    /// [`Store::mark_clean`]).
    ///
    /// # Errors
    /// SQLite errors or unreadable records.
    pub fn load(&mut self, charger: &str) -> Result<SavedState, StoreError> {
        let mut state = SavedState::default();
        let row: Option<(bool, bool)> = self
            .conn
            .query_row(
                "SELECT unavailable, clean FROM chargers WHERE charger = ?1",
                [charger],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((unavailable, clean)) = row {
            state.unavailable = unavailable;
            state.clean_shutdown = clean;
            state.known = true;
        }
        let mut stmt = self.conn.prepare(
            "SELECT seq, action, payload, local_tx, attempts FROM outbox WHERE charger = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([charger], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (seq, action, payload, local_tx, attempts) = row?;
            state.outbox.push(SavedMessage {
                seq: u64::try_from(seq).unwrap_or(0),
                action,
                payload: serde_json::from_str(&payload)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                local_tx: local_tx.and_then(|l| u64::try_from(l).ok()),
                attempts: u32::try_from(attempts).unwrap_or(0),
            });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT doc FROM transactions WHERE charger = ?1 ORDER BY local")?;
        for doc in stmt.query_map([charger], |r| r.get::<_, String>(0))? {
            state
                .transactions
                .push(serde_json::from_str(&doc?).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM config_keys WHERE charger = ?1 ORDER BY key")?;
        for kv in stmt.query_map([charger], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            state.keys.push(kv?);
        }
        let profiles: Option<String> = self
            .conn
            .query_row(
                "SELECT doc FROM charging_profiles WHERE charger = ?1",
                [charger],
                |r| r.get(0),
            )
            .optional()?;
        state.profiles = profiles
            .map(|d| serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?;
        state.session_energy = self
            .conn
            .query_row(
                "SELECT base, raw FROM session_energy WHERE charger = ?1",
                [charger],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        self.conn.execute(
            "INSERT INTO chargers (charger, clean) VALUES (?1, 0)
             ON CONFLICT (charger) DO UPDATE SET clean = 0",
            [charger],
        )?;
        Ok(state)
    }

    /// Records a clean stop of one charger.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn mark_clean(&mut self, charger: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE chargers SET clean = 1 WHERE charger = ?1",
            [charger],
        )?;
        Ok(())
    }

    /// Applies the ops of several chargers in one SQLite transaction.
    ///
    /// # Errors
    /// SQLite errors (nothing of the batch is applied then).
    pub fn apply(&mut self, batch: &[(String, Vec<StoreOp>)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for (charger, ops) in batch {
            for op in ops {
                apply_op(&tx, charger, op)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[allow(clippy::cast_possible_wrap)]
fn apply_op(tx: &rusqlite::Transaction<'_>, charger: &str, op: &StoreOp) -> Result<(), StoreError> {
    match op {
        StoreOp::Enqueue {
            seq,
            action,
            payload,
            local_tx,
        } => {
            tx.execute(
                "INSERT OR REPLACE INTO outbox (charger, seq, action, payload, local_tx, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![
                    charger,
                    *seq as i64,
                    action,
                    payload.to_string(),
                    local_tx.map(|l| l as i64)
                ],
            )?;
        }
        StoreOp::Dequeue { seq } => {
            tx.execute(
                "DELETE FROM outbox WHERE charger = ?1 AND seq = ?2",
                params![charger, *seq as i64],
            )?;
        }
        StoreOp::Attempted { seq, attempts } => {
            tx.execute(
                "UPDATE outbox SET attempts = ?3 WHERE charger = ?1 AND seq = ?2",
                params![charger, *seq as i64, attempts],
            )?;
        }
        StoreOp::TxUpsert(saved) => {
            let doc =
                serde_json::to_string(saved).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT OR REPLACE INTO transactions (charger, local, doc) VALUES (?1, ?2, ?3)",
                params![charger, saved.local as i64, doc],
            )?;
        }
        StoreOp::TxForget { local } => {
            tx.execute(
                "DELETE FROM transactions WHERE charger = ?1 AND local = ?2",
                params![charger, *local as i64],
            )?;
        }
        StoreOp::Key { key, value } => {
            tx.execute(
                "INSERT OR REPLACE INTO config_keys (charger, key, value) VALUES (?1, ?2, ?3)",
                params![charger, key, value],
            )?;
        }
        StoreOp::Profiles(doc) => {
            tx.execute(
                "INSERT OR REPLACE INTO charging_profiles (charger, doc) VALUES (?1, ?2)",
                params![charger, doc.to_string()],
            )?;
        }
        StoreOp::Unavailable(u) => {
            tx.execute(
                "INSERT INTO chargers (charger, unavailable, clean) VALUES (?1, ?2, 0)
                 ON CONFLICT (charger) DO UPDATE SET unavailable = ?2",
                params![charger, u],
            )?;
        }
        StoreOp::SessionEnergy { base, raw } => {
            tx.execute(
                "INSERT OR REPLACE INTO session_energy (charger, base, raw) VALUES (?1, ?2, ?3)",
                params![charger, base, raw],
            )?;
        }
    }
    Ok(())
}

enum Request {
    Load(String, oneshot::Sender<Result<SavedState, StoreError>>),
    Apply(String, Vec<StoreOp>, oneshot::Sender<Result<(), String>>),
    Clean(String, oneshot::Sender<()>),
}

/// A clonable handle to the store thread.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Load(c, _) => write!(f, "Load({c})"),
            Request::Apply(c, ops, _) => write!(f, "Apply({c}, {} ops)", ops.len()),
            Request::Clean(c, _) => write!(f, "Clean({c})"),
        }
    }
}

impl StoreHandle {
    /// Starts the thread that owns `store`. It ends when every handle is dropped.
    #[must_use]
    pub fn spawn(store: Store) -> StoreHandle {
        let (tx, rx) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name("chargebridge-store".into())
            .spawn(move || serve(store, rx))
            .map_or_else(
                |e| {
                    tracing::error!("cannot start the state database thread: {e}");
                    StoreHandle {
                        tx: mpsc::channel(1).0,
                    }
                },
                |_| StoreHandle { tx },
            )
    }

    /// One charger's stored state.
    ///
    /// # Errors
    /// Database errors, or the thread is gone.
    pub async fn load(&self, charger: &str) -> Result<SavedState, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Load(charger.to_owned(), reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Commits `ops`; returns once they are on disk.
    ///
    /// # Errors
    /// A text describing the database error.
    pub async fn apply(&self, charger: &str, ops: Vec<StoreOp>) -> Result<(), String> {
        if ops.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Apply(charger.to_owned(), ops, reply))
            .await
            .map_err(|_| StoreError::Closed.to_string())?;
        rx.await.map_err(|_| StoreError::Closed.to_string())?
    }

    /// Records that this charger stopped cleanly.
    pub async fn mark_clean(&self, charger: &str) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Request::Clean(charger.to_owned(), reply))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// An apply waiting for the batch commit: charger, ops, where the outcome goes.
type PendingApply = (String, Vec<StoreOp>, oneshot::Sender<Result<(), String>>);

fn serve(mut store: Store, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.blocking_recv() {
        // Group the applies that are already waiting into one commit.
        let mut applies: Vec<PendingApply> = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                Request::Apply(charger, ops, reply) => applies.push((charger, ops, reply)),
                Request::Load(charger, reply) => {
                    let _ = reply.send(store.load(&charger));
                }
                Request::Clean(charger, reply) => {
                    if let Err(e) = store.mark_clean(&charger) {
                        tracing::warn!("state database: {e}");
                    }
                    let _ = reply.send(());
                }
            }
            if applies.len() < 256 {
                next = rx.try_recv().ok();
            }
        }
        if applies.is_empty() {
            continue;
        }
        let batch: Vec<(String, Vec<StoreOp>)> = applies
            .iter_mut()
            .map(|(c, ops, _)| (c.clone(), std::mem::take(ops)))
            .collect();
        let result = store.apply(&batch).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!("state database write failed: {e}");
        }
        for (_, _, reply) in applies {
            let _ = reply.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_authorization_key() {
        let op = StoreOp::Key {
            key: "AuthorizationKey".into(),
            value: "00112233445566778899aabbccddeeff".into(),
        };
        let state = SavedState {
            keys: vec![
                (
                    "AuthorizationKey".into(),
                    "00112233445566778899aabbccddeeff".into(),
                ),
                ("HeartbeatInterval".into(), "60".into()),
            ],
            ..SavedState::default()
        };
        for shown in [format!("{op:?}"), format!("{state:?}")] {
            assert!(!shown.contains("00112233"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert!(
            format!("{state:?}").contains("60"),
            "other keys stay visible"
        );
    }
    use serde_json::json;

    fn tx(local: u64, open: bool) -> SavedTx {
        SavedTx {
            local,
            ocpp_id: None,
            id_tag: "TAG".into(),
            meter_start: 1000,
            started: "2026-12-01T12:00:00.000Z".into(),
            open,
            authorized: true,
            last_meter: 1000,
            begin: json!([]),
        }
    }

    #[test]
    fn outbox_transactions_keys_and_availability_round_trip() {
        let mut s = Store::in_memory().unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len());
        let first = s.load("CB-1").unwrap();
        assert!(!first.known);
        s.apply(&[(
            "CB-1".into(),
            vec![
                StoreOp::TxUpsert(tx(1, true)),
                StoreOp::Enqueue {
                    seq: 5,
                    action: "StartTransaction".into(),
                    payload: json!({"meterStart": 1000}),
                    local_tx: Some(1),
                },
                StoreOp::Enqueue {
                    seq: 6,
                    action: "MeterValues".into(),
                    payload: json!({}),
                    local_tx: Some(1),
                },
                StoreOp::Attempted {
                    seq: 5,
                    attempts: 2,
                },
                StoreOp::Key {
                    key: "MeterValueSampleInterval".into(),
                    value: "10".into(),
                },
                StoreOp::Unavailable(true),
            ],
        )])
        .unwrap();
        s.apply(&[(
            "CB-2".into(),
            vec![StoreOp::Enqueue {
                seq: 1,
                action: "X".into(),
                payload: json!({}),
                local_tx: None,
            }],
        )])
        .unwrap();
        let st = s.load("CB-1").unwrap();
        assert!(st.known);
        assert!(
            !st.clean_shutdown,
            "loaded once before without a clean stop"
        );
        assert!(st.unavailable);
        assert_eq!(st.outbox.len(), 2);
        assert_eq!(st.outbox[0].seq, 5);
        assert_eq!(st.outbox[0].attempts, 2);
        assert_eq!(st.outbox[0].local_tx, Some(1));
        assert_eq!(st.transactions, vec![tx(1, true)]);
        assert_eq!(
            st.keys,
            vec![("MeterValueSampleInterval".to_owned(), "10".to_owned())]
        );
        s.apply(&[(
            "CB-1".into(),
            vec![StoreOp::Dequeue { seq: 5 }, StoreOp::TxForget { local: 1 }],
        )])
        .unwrap();
        s.mark_clean("CB-1").unwrap();
        let st = s.load("CB-1").unwrap();
        assert!(st.clean_shutdown);
        assert_eq!(st.outbox.len(), 1);
        assert!(st.transactions.is_empty());
        assert_eq!(s.load("CB-2").unwrap().outbox.len(), 1);
    }

    #[test]
    fn a_file_database_survives_reopening_and_is_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.load("A").unwrap();
            s.apply(&[(
                "A".into(),
                vec![StoreOp::Key {
                    key: "K".into(),
                    value: "V".into(),
                }],
            )])
            .unwrap();
        }
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len());
        assert_eq!(s.load("A").unwrap().keys.len(), 1);
    }

    #[tokio::test]
    async fn the_handle_commits_before_it_answers() {
        let h = StoreHandle::spawn(Store::in_memory().unwrap());
        h.load("A").await.unwrap();
        h.apply("A", vec![StoreOp::Unavailable(true)])
            .await
            .unwrap();
        assert!(h.load("A").await.unwrap().unavailable);
    }
}
