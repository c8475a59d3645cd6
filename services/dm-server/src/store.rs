//! What the server remembers: Generic Alerts (with correlator de-duplication), session summaries, the
//! nonces issued to each client and queued commands; in memory, optionally journalled to a JSON Lines file.
//!
//! # Data file format
//! One JSON object per line, tagged by `kind`:
//! - `{"kind":"meta","version":1,"server_id":"..."}`: first line of a compacted file;
//! - `{"kind":"alert", ...}`: an [`AlertRecord`] (append-only; its `correlator` rebuilds de-duplication);
//! - `{"kind":"session", ...}`: a finished [`SessionRecord`];
//! - `{"kind":"nonce","dev_id":"...","nonce":"<b64>"}`: the NextNonce last issued to a client (last wins);
//! - `{"kind":"command", ...}`: a [`CommandRecord`], written again at every change (last wins by `id`).
//!
//! Lines are appended through a buffer that is flushed at the end of each request and at shutdown. On
//! start the file is read (unparseable lines, e.g. a line torn by a crash, are skipped with a warning) and
//! rewritten compacted (write to `<file>.tmp`, fsync, rename), so it does not grow across restarts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::StoreError;

/// Version written in the data file's `meta` line.
pub const FORMAT_VERSION: u32 = 1;
/// Finished sessions kept (the oldest are dropped beyond this).
pub const MAX_SESSION_HISTORY: usize = 10_000;
/// Default page size of the list queries.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of the list queries.
pub const MAX_LIMIT: usize = 1000;

fn is_false(b: &bool) -> bool {
    !*b
}

/// One Generic Alert item as received and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Sequence number, from 1, in order of receipt.
    pub id: u64,
    /// `Meta/Type`: the alert type URN.
    pub alert_type: String,
    /// `Source/LocURI`: the node that raised the alert.
    pub source: Option<String>,
    /// `Target/LocURI`.
    pub target: Option<String>,
    /// `Meta/Format`.
    pub format: Option<String>,
    /// `Meta/Mark`.
    pub mark: Option<String>,
    /// `Data` as text (base64 of the bytes when they are not UTF-8, see `data_base64`).
    pub data: Option<String>,
    /// True when `data` is base64 of binary data.
    #[serde(default, skip_serializing_if = "is_false")]
    pub data_base64: bool,
    /// The Alert's `Correlator`.
    pub correlator: Option<String>,
    /// The client's DevId (SyncHdr Source LocURI).
    pub dev_id: String,
    /// The account name the client authenticated with.
    pub account: Option<String>,
    /// The SyncML SessionID.
    pub session_id: String,
    /// The id of this server's session record.
    pub session: String,
    /// When it was received.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// How a session's authentication went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    /// Not yet authenticated.
    Pending,
    /// Authenticated.
    Authenticated,
    /// Refused.
    Failed,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The server's last package closed it.
    Completed,
    /// Authentication failed too often.
    AuthFailed,
    /// The client sent Alert 1223.
    Aborted,
    /// The client broke the protocol or sent too many messages.
    Error,
    /// Idle for longer than the session timeout.
    Expired,
    /// The server stopped while it was open.
    Shutdown,
}

impl SessionEnd {
    /// The name used in records and spans (`completed`, `auth_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Completed => "completed",
            SessionEnd::AuthFailed => "auth_failed",
            SessionEnd::Aborted => "aborted",
            SessionEnd::Error => "error",
            SessionEnd::Expired => "expired",
            SessionEnd::Shutdown => "shutdown",
        }
    }
}

/// A DM session's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// This server's id for the session (also the RespURI token).
    pub id: String,
    /// The SyncML SessionID.
    pub session_id: String,
    /// The client's DevId (SyncHdr Source LocURI).
    pub dev_id: String,
    /// The account name, once authenticated.
    pub account: Option<String>,
    /// Authentication result.
    pub auth: AuthOutcome,
    /// First message.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// End (absent while open).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Client messages received.
    pub messages: u32,
    /// `xml` or `wbxml` (of the first message).
    pub encoding: String,
    /// How it ended (absent while open).
    pub final_status: Option<SessionEnd>,
    /// The last SyncHdr status code sent to the client.
    pub last_code: Option<u16>,
    /// Generic Alert items recorded in this session.
    pub alerts_recorded: u32,
    /// Generic Alerts answered but not recorded (repeated correlator).
    pub alerts_duplicate: u32,
}

/// A nonce issued to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRecord {
    /// The client's DevId.
    pub dev_id: String,
    /// The nonce, base64.
    pub nonce: String,
}

/// A command an operator asked the server to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// `Get` of a node.
    Get,
    /// `Replace` of a node's value.
    Replace,
}

/// Where a queued command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Waiting for the client's next session.
    Pending,
    /// Queued in an open session, not yet sent (the client has not authenticated yet).
    Assigned,
    /// Sent; waiting for the client's Status.
    Sent,
    /// The client answered (see `status` and `results`).
    Completed,
    /// Sent in [`MAX_COMMAND_ATTEMPTS`] sessions that ended without an answer.
    Failed,
}

/// Sessions a command is sent in before it fails for lack of an answer.
pub const MAX_COMMAND_ATTEMPTS: u32 = 3;

/// One item of the Results answering a Get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultItem {
    /// `Source/LocURI`.
    pub uri: Option<String>,
    /// `Meta/Format`.
    pub format: Option<String>,
    /// `Meta/Type`.
    #[serde(rename = "type")]
    pub mime_type: Option<String>,
    /// `Data` as text.
    pub data: Option<String>,
    /// True when `data` is base64 of binary data.
    #[serde(default, skip_serializing_if = "is_false")]
    pub data_base64: bool,
}

/// A queued command and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Its id (also the tag it travels with in the session).
    pub id: String,
    /// The client's DevId.
    pub dev_id: String,
    /// `get` or `replace`.
    pub command: CommandKind,
    /// Target URI.
    pub uri: String,
    /// Value of a Replace.
    pub value: Option<String>,
    /// `Meta/Format` of a Replace (`chr` when absent).
    pub format: Option<String>,
    /// Where it is.
    pub state: CommandState,
    /// Sessions it was sent in.
    pub attempts: u32,
    /// The session it is assigned to or was last sent in.
    pub session: Option<String>,
    /// The client's status code.
    pub status: Option<u16>,
    /// Results of a Get.
    #[serde(default)]
    pub results: Vec<ResultItem>,
    /// When it was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last sent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    /// When the client's status arrived (or it failed).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

/// One line of the data file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Meta { version: u32, server_id: String },
    Alert(AlertRecord),
    Session(SessionRecord),
    Nonce(NonceRecord),
    Command(CommandRecord),
}

/// Filters and page of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AlertQuery {
    /// Alert type URN (case-insensitive).
    #[serde(rename = "type")]
    pub alert_type: Option<String>,
    /// Client DevId.
    pub dev_id: Option<String>,
    /// Correlator.
    pub correlator: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Records to skip.
    pub offset: Option<usize>,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// Records matching the filters.
    pub total: usize,
    /// Records skipped.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
    /// This page.
    pub items: Vec<T>,
}

/// The page `offset..offset+limit` of `matching` (limit defaults to [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
pub fn page<T: Clone>(matching: Vec<&T>, limit: Option<usize>, offset: Option<usize>) -> Page<T> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let offset = offset.unwrap_or(0);
    let total = matching.len();
    let items = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    Page {
        total,
        offset,
        limit,
        items,
    }
}

/// What recording a Generic Alert command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    /// This many items were recorded.
    Recorded(usize),
    /// The correlator was seen before from this client: nothing recorded.
    Duplicate,
}

struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
}

/// The server's memory, journalled to the data file when there is one.
pub struct Store {
    server_id: String,
    alerts: Vec<AlertRecord>,
    seen: HashSet<(String, String)>,
    sessions: VecDeque<SessionRecord>,
    nonces: HashMap<String, Vec<u8>>,
    commands: Vec<CommandRecord>,
    command_index: HashMap<String, usize>,
    next_alert_id: u64,
    journal: Option<Journal>,
    skipped_lines: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("server_id", &self.server_id)
            .field("alerts", &self.alerts.len())
            .field("sessions", &self.sessions.len())
            .field("nonces", &self.nonces.len())
            .field("commands", &self.commands.len())
            .field("file", &self.journal.as_ref().map(|j| &j.path))
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// An empty store kept in memory only.
    pub fn in_memory(server_id: impl Into<String>) -> Store {
        Store {
            server_id: server_id.into(),
            alerts: Vec::new(),
            seen: HashSet::new(),
            sessions: VecDeque::new(),
            nonces: HashMap::new(),
            commands: Vec::new(),
            command_index: HashMap::new(),
            next_alert_id: 1,
            journal: None,
            skipped_lines: 0,
        }
    }

    /// Load the data file (if it exists), compact it, and journal to it from now on.
    pub fn open(server_id: impl Into<String>, path: &Path) -> Result<Store, StoreError> {
        let mut store = Store::in_memory(server_id);
        match File::open(path) {
            Ok(file) => store.load(BufReader::new(file), path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path)(e)),
        }
        store.compact_to(path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        store.journal = Some(Journal {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        });
        Ok(store)
    }

    /// Lines of the data file that could not be read at start.
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    fn load(&mut self, reader: impl BufRead, path: &Path) -> Result<(), StoreError> {
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(io_err(path))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(&line) {
                Ok(l) => self.apply(l),
                Err(e) => {
                    self.skipped_lines = self.skipped_lines.saturating_add(1);
                    tracing::warn!(
                        file = %path.display(),
                        line = number.saturating_add(1),
                        error = %e,
                        "skipping an unreadable data file line"
                    );
                }
            }
        }
        // Commands caught in a session when the server stopped go back to the queue.
        for c in &mut self.commands {
            if matches!(c.state, CommandState::Assigned | CommandState::Sent) {
                c.state = CommandState::Pending;
                c.session = None;
            }
        }
        Ok(())
    }

    fn apply(&mut self, line: Line) {
        match line {
            Line::Meta { server_id, .. } => {
                if server_id != self.server_id {
                    tracing::warn!(
                        file_server_id = %server_id,
                        server_id = %self.server_id,
                        "the data file was written by another ServerID"
                    );
                }
            }
            Line::Alert(a) => {
                if let Some(c) = &a.correlator {
                    self.seen.insert((a.dev_id.clone(), c.clone()));
                }
                self.next_alert_id = self.next_alert_id.max(a.id.saturating_add(1));
                self.alerts.push(a);
            }
            Line::Session(s) => self.push_session(s),
            Line::Nonce(n) => {
                if let Ok(bytes) = STANDARD.decode(n.nonce.as_bytes()) {
                    self.nonces.insert(n.dev_id, bytes);
                }
            }
            Line::Command(c) => self.put_command(c),
        }
    }

    fn push_session(&mut self, s: SessionRecord) {
        if self.sessions.len() >= MAX_SESSION_HISTORY {
            self.sessions.pop_front();
        }
        self.sessions.push_back(s);
    }

    fn put_command(&mut self, c: CommandRecord) {
        match self.command_index.get(&c.id).copied() {
            Some(i) => {
                if let Some(slot) = self.commands.get_mut(i) {
                    *slot = c;
                }
            }
            None => {
                self.command_index.insert(c.id.clone(), self.commands.len());
                self.commands.push(c);
            }
        }
    }

    fn compact_to(&self, path: &Path) -> Result<(), StoreError> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = BufWriter::new(file);
        let mut lines = vec![Line::Meta {
            version: FORMAT_VERSION,
            server_id: self.server_id.clone(),
        }];
        lines.extend(self.alerts.iter().cloned().map(Line::Alert));
        lines.extend(self.sessions.iter().cloned().map(Line::Session));
        let mut nonces: Vec<_> = self.nonces.iter().collect();
        nonces.sort();
        lines.extend(nonces.into_iter().map(|(d, n)| {
            Line::Nonce(NonceRecord {
                dev_id: d.clone(),
                nonce: STANDARD.encode(n),
            })
        }));
        lines.extend(self.commands.iter().cloned().map(Line::Command));
        for line in &lines {
            write_line(&mut out, line, &tmp)?;
        }
        let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }

    fn append(&mut self, line: &Line) -> Result<(), StoreError> {
        match &mut self.journal {
            Some(j) => write_line(&mut j.out, line, &j.path),
            None => Ok(()),
        }
    }

    /// Write buffered lines to the data file.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        match &mut self.journal {
            Some(j) => j.out.flush().map_err(io_err(&j.path)),
            None => Ok(()),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Alerts

    /// True when `correlator` was already recorded for `dev_id`.
    pub fn is_duplicate(&self, dev_id: &str, correlator: &str) -> bool {
        self.seen
            .contains(&(dev_id.to_owned(), correlator.to_owned()))
    }

    /// Record the items of one Generic Alert command, unless its correlator was seen before from the
    /// same client. `id` of each record is assigned here.
    pub fn record_alerts(
        &mut self,
        dev_id: &str,
        correlator: Option<&str>,
        records: Vec<AlertRecord>,
    ) -> Result<AlertOutcome, StoreError> {
        if let Some(c) = correlator {
            if self.is_duplicate(dev_id, c) {
                return Ok(AlertOutcome::Duplicate);
            }
            self.seen.insert((dev_id.to_owned(), c.to_owned()));
        }
        let n = records.len();
        for mut r in records {
            r.id = self.next_alert_id;
            self.next_alert_id = self.next_alert_id.saturating_add(1);
            self.append(&Line::Alert(r.clone()))?;
            self.alerts.push(r);
        }
        Ok(AlertOutcome::Recorded(n))
    }

    /// Alerts matching the query, oldest first.
    pub fn alerts(&self, q: &AlertQuery) -> Page<AlertRecord> {
        let matching = self
            .alerts
            .iter()
            .filter(|a| {
                q.alert_type
                    .as_deref()
                    .is_none_or(|t| omadm::alert::same_type(t, &a.alert_type))
                    && q.dev_id.as_deref().is_none_or(|d| d == a.dev_id)
                    && q.correlator
                        .as_deref()
                        .is_none_or(|c| a.correlator.as_deref() == Some(c))
            })
            .collect();
        page(matching, q.limit, q.offset)
    }

    // ---------------------------------------------------------------------------------------------
    // Sessions and nonces

    /// Record a finished session.
    pub fn record_session(&mut self, s: SessionRecord) -> Result<(), StoreError> {
        self.append(&Line::Session(s.clone()))?;
        self.push_session(s);
        Ok(())
    }

    /// Finished sessions, oldest first.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionRecord> {
        self.sessions.iter()
    }

    /// The nonce last issued to `dev_id`.
    pub fn nonce(&self, dev_id: &str) -> Option<&[u8]> {
        self.nonces.get(dev_id).map(Vec::as_slice)
    }

    /// All nonces, by DevId.
    pub fn nonces(&self) -> &HashMap<String, Vec<u8>> {
        &self.nonces
    }

    /// Remember (and journal) the nonce issued to `dev_id`.
    pub fn set_nonce(&mut self, dev_id: &str, nonce: Vec<u8>) -> Result<(), StoreError> {
        self.append(&Line::Nonce(NonceRecord {
            dev_id: dev_id.to_owned(),
            nonce: STANDARD.encode(&nonce),
        }))?;
        self.nonces.insert(dev_id.to_owned(), nonce);
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------
    // Commands

    fn save_command(&mut self, c: CommandRecord) -> Result<(), StoreError> {
        self.append(&Line::Command(c.clone()))?;
        self.put_command(c);
        Ok(())
    }

    /// Queue a new command.
    pub fn add_command(&mut self, c: CommandRecord) -> Result<(), StoreError> {
        self.save_command(c)
    }

    /// Commands, oldest first, optionally of one client.
    pub fn commands(&self, dev_id: Option<&str>) -> Vec<CommandRecord> {
        self.commands
            .iter()
            .filter(|c| dev_id.is_none_or(|d| d == c.dev_id))
            .cloned()
            .collect()
    }

    /// The pending commands of `dev_id`, now assigned to `session`.
    pub fn assign_pending(
        &mut self,
        dev_id: &str,
        session: &str,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let picked: Vec<CommandRecord> = self
            .commands
            .iter()
            .filter(|c| c.state == CommandState::Pending && c.dev_id == dev_id)
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(picked.len());
        for mut c in picked {
            c.state = CommandState::Assigned;
            c.session = Some(session.to_owned());
            self.save_command(c.clone())?;
            out.push(c);
        }
        Ok(out)
    }

    fn update_command(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut CommandRecord),
    ) -> Result<(), StoreError> {
        let Some(mut c) = self
            .command_index
            .get(id)
            .and_then(|&i| self.commands.get(i))
            .cloned()
        else {
            return Ok(());
        };
        f(&mut c);
        self.save_command(c)
    }

    /// The commands assigned to `session` went out in a reply.
    pub fn mark_sent(&mut self, session: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .commands
            .iter()
            .filter(|c| c.state == CommandState::Assigned && c.session.as_deref() == Some(session))
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            self.update_command(&id, |c| {
                c.state = CommandState::Sent;
                c.attempts = c.attempts.saturating_add(1);
                c.sent_at = Some(now);
            })?;
        }
        Ok(())
    }

    /// The client answered command `id` with `code`.
    pub fn command_status(
        &mut self,
        id: &str,
        code: u16,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.update_command(id, |c| {
            c.state = CommandState::Completed;
            c.status = Some(code);
            c.completed_at = Some(now);
        })
    }

    /// The client sent Results for command `id`.
    pub fn command_results(&mut self, id: &str, items: Vec<ResultItem>) -> Result<(), StoreError> {
        self.update_command(id, |c| c.results.extend(items))
    }

    /// `session` ended: its unsent commands return to the queue, and so do sent ones without an answer
    /// (until [`MAX_COMMAND_ATTEMPTS`], then they fail).
    pub fn release_session(
        &mut self,
        session: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .commands
            .iter()
            .filter(|c| {
                matches!(c.state, CommandState::Assigned | CommandState::Sent)
                    && c.session.as_deref() == Some(session)
            })
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            self.update_command(&id, |c| {
                if c.state == CommandState::Sent && c.attempts >= MAX_COMMAND_ATTEMPTS {
                    c.state = CommandState::Failed;
                    c.completed_at = Some(now);
                } else {
                    c.state = CommandState::Pending;
                }
            })?;
        }
        Ok(())
    }
}

fn write_line(out: &mut impl Write, line: &Line, path: &Path) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *out, line).map_err(|source| StoreError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    out.write_all(b"\n").map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(dev: &str, corr: Option<&str>, ty: &str) -> AlertRecord {
        AlertRecord {
            id: 0,
            alert_type: ty.into(),
            source: None,
            target: None,
            format: Some("chr".into()),
            mark: None,
            data: Some("d".into()),
            data_base64: false,
            correlator: corr.map(str::to_owned),
            dev_id: dev.into(),
            account: Some("acc".into()),
            session_id: "1".into(),
            session: "s".into(),
            received_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn command(id: &str, dev: &str) -> CommandRecord {
        CommandRecord {
            id: id.into(),
            dev_id: dev.into(),
            command: CommandKind::Get,
            uri: "./DevInfo/Mod".into(),
            value: None,
            format: None,
            state: CommandState::Pending,
            attempts: 0,
            session: None,
            status: None,
            results: Vec::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            sent_at: None,
            completed_at: None,
        }
    }

    #[test]
    fn correlators_deduplicate_per_client() {
        let mut s = Store::in_memory("dms");
        let two = vec![alert("d1", Some("c1"), "t"), alert("d1", Some("c1"), "t")];
        assert_eq!(
            s.record_alerts("d1", Some("c1"), two).unwrap(),
            AlertOutcome::Recorded(2)
        );
        assert_eq!(
            s.record_alerts("d1", Some("c1"), vec![alert("d1", Some("c1"), "t")])
                .unwrap(),
            AlertOutcome::Duplicate
        );
        // Another client may use the same correlator; alerts without one are never de-duplicated.
        assert_eq!(
            s.record_alerts("d2", Some("c1"), vec![alert("d2", Some("c1"), "t")])
                .unwrap(),
            AlertOutcome::Recorded(1)
        );
        for _ in 0..2 {
            s.record_alerts("d1", None, vec![alert("d1", None, "t")])
                .unwrap();
        }
        let all = s.alerts(&AlertQuery::default());
        assert_eq!(all.total, 5);
        assert_eq!(
            all.items.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        let q = AlertQuery {
            dev_id: Some("d1".into()),
            correlator: Some("c1".into()),
            limit: Some(1),
            offset: Some(1),
            ..AlertQuery::default()
        };
        let p = s.alerts(&q);
        assert_eq!((p.total, p.items.len(), p.items[0].id), (2, 1, 2));
        let q = AlertQuery {
            alert_type: Some("T".into()),
            limit: Some(100_000),
            ..AlertQuery::default()
        };
        assert_eq!(s.alerts(&q).limit, MAX_LIMIT);
        assert_eq!(s.alerts(&q).total, 5);
    }

    #[test]
    fn data_file_round_trip_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        {
            let mut s = Store::open("dms", &path).unwrap();
            s.record_alerts("d1", Some("c1"), vec![alert("d1", Some("c1"), "t")])
                .unwrap();
            s.set_nonce("d1", vec![1, 2, 3]).unwrap();
            s.set_nonce("d1", vec![4, 5, 6]).unwrap();
            s.add_command(command("k1", "d1")).unwrap();
            s.assign_pending("d1", "sess").unwrap();
            s.mark_sent("sess", OffsetDateTime::UNIX_EPOCH).unwrap();
            s.flush().unwrap();
        }
        // A line torn by a crash is skipped.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"alert\",\"id\":");
        std::fs::write(&path, text).unwrap();
        let s = Store::open("dms", &path).unwrap();
        assert_eq!(s.skipped_lines(), 1);
        assert!(s.is_duplicate("d1", "c1"));
        assert_eq!(s.nonce("d1"), Some(&[4u8, 5, 6][..]));
        let cmds = s.commands(None);
        assert_eq!(cmds.len(), 1);
        // In flight at the stop: back to pending, the attempt counted.
        assert_eq!(
            (cmds[0].state, cmds[0].attempts),
            (CommandState::Pending, 1)
        );
        // Compacted: one meta, one alert, one nonce, one command line.
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 4);
        let mut s = s;
        assert_eq!(
            s.record_alerts("d1", None, vec![alert("d1", None, "t")])
                .unwrap(),
            AlertOutcome::Recorded(1)
        );
        assert_eq!(s.alerts(&AlertQuery::default()).items[1].id, 2);
    }

    #[test]
    fn commands_return_to_the_queue_then_fail() {
        let mut s = Store::in_memory("dms");
        s.add_command(command("k1", "d1")).unwrap();
        s.add_command(command("k2", "d2")).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        for attempt in 1..=MAX_COMMAND_ATTEMPTS {
            let got = s.assign_pending("d1", "s").unwrap();
            assert_eq!(got.len(), 1, "attempt {attempt}");
            s.mark_sent("s", now).unwrap();
            s.release_session("s", now).unwrap();
        }
        assert_eq!(s.commands(Some("d1"))[0].state, CommandState::Failed);
        // Assigned but never sent (authentication failed): back to pending, no attempt counted.
        s.assign_pending("d2", "t").unwrap();
        s.release_session("t", now).unwrap();
        let c = &s.commands(Some("d2"))[0];
        assert_eq!((c.state, c.attempts), (CommandState::Pending, 0));
        s.assign_pending("d2", "u").unwrap();
        s.mark_sent("u", now).unwrap();
        s.command_status("k2", 200, now).unwrap();
        s.command_results(
            "k2",
            vec![ResultItem {
                uri: Some("./DevInfo/Mod".into()),
                format: None,
                mime_type: None,
                data: Some("M".into()),
                data_base64: false,
            }],
        )
        .unwrap();
        s.release_session("u", now).unwrap();
        let c = &s.commands(Some("d2"))[0];
        assert_eq!(
            (c.state, c.status, c.results.len()),
            (CommandState::Completed, Some(200), 1)
        );
    }
}
