//! The table of open DM sessions: found by the RespURI token or by (SessionID, Source LocURI), capped in
//! number, and swept of sessions idle longer than the timeout so memory stays bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The natural key of a session: the client's SessionID and its Source LocURI (DevId).
pub type SessionKey = (String, String);

struct Entry<T> {
    key: SessionKey,
    last_seen: Instant,
    value: T,
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull {
    /// The cap.
    pub limit: usize,
}

/// Open sessions by token, with an index by [`SessionKey`].
pub struct SessionTable<T> {
    by_token: HashMap<String, Entry<T>>,
    by_key: HashMap<SessionKey, String>,
    max: usize,
    idle: Duration,
}

impl<T> std::fmt::Debug for SessionTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("open", &self.by_token.len())
            .field("max", &self.max)
            .field("idle", &self.idle)
            .finish()
    }
}

impl<T> SessionTable<T> {
    /// An empty table holding at most `max` sessions, each dropped after `idle` without a message.
    pub fn new(max: usize, idle: Duration) -> SessionTable<T> {
        SessionTable {
            by_token: HashMap::new(),
            by_key: HashMap::new(),
            max,
            idle,
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// The token of the session a message belongs to: by `token` when it names an open session, else
    /// by `key`.
    pub fn find(&self, token: Option<&str>, key: &SessionKey) -> Option<String> {
        token
            .filter(|t| self.by_token.contains_key(*t))
            .map(str::to_owned)
            .or_else(|| self.by_key.get(key).cloned())
    }

    /// The session with this token, marked as seen at `now`.
    pub fn touch(&mut self, token: &str, now: Instant) -> Option<&mut T> {
        let e = self.by_token.get_mut(token)?;
        e.last_seen = now;
        Some(&mut e.value)
    }

    /// The session with this token.
    pub fn get(&self, token: &str) -> Option<&T> {
        self.by_token.get(token).map(|e| &e.value)
    }

    /// Add a session. A session with the same key is replaced (and returned): the client started
    /// over with the same SessionID.
    pub fn insert(
        &mut self,
        token: String,
        key: SessionKey,
        value: T,
        now: Instant,
    ) -> Result<Option<T>, TableFull> {
        let existing = self.by_key.get(&key).cloned();
        if existing.is_none() && self.by_token.len() >= self.max {
            return Err(TableFull { limit: self.max });
        }
        let replaced = existing.and_then(|t| self.remove(&t));
        self.by_key.insert(key.clone(), token.clone());
        self.by_token.insert(
            token,
            Entry {
                key,
                last_seen: now,
                value,
            },
        );
        Ok(replaced)
    }

    /// Remove a session.
    pub fn remove(&mut self, token: &str) -> Option<T> {
        let e = self.by_token.remove(token)?;
        if self.by_key.get(&e.key).is_some_and(|t| t == token) {
            self.by_key.remove(&e.key);
        }
        Some(e.value)
    }

    /// Remove and return the sessions idle for longer than the timeout at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let idle = self.idle;
        let stale: Vec<String> = self
            .by_token
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) > idle)
            .map(|(t, _)| t.clone())
            .collect();
        stale.iter().filter_map(|t| self.remove(t)).collect()
    }

    /// Remove and return every session.
    pub fn drain(&mut self) -> Vec<T> {
        self.by_key.clear();
        self.by_token.drain().map(|(_, e)| e.value).collect()
    }

    /// The open sessions.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.by_token.values().map(|e| &e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SessionKey {
        (s.to_owned(), "dev".to_owned())
    }

    #[test]
    fn find_by_token_or_key() {
        let now = Instant::now();
        let mut t = SessionTable::new(4, Duration::from_secs(60));
        t.insert("tok".into(), key("1"), 10, now).unwrap();
        assert_eq!(t.find(Some("tok"), &key("x")).as_deref(), Some("tok"));
        assert_eq!(t.find(Some("stale"), &key("1")).as_deref(), Some("tok"));
        assert_eq!(t.find(None, &key("2")), None);
        // Same key again: the old session is replaced.
        assert_eq!(t.insert("tok2".into(), key("1"), 11, now), Ok(Some(10)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("tok2"), Some(&11));
    }

    #[test]
    fn idle_sessions_expire() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let mut t = SessionTable::new(4, idle);
        t.insert("a".into(), key("1"), 1, t0).unwrap();
        t.insert("b".into(), key("2"), 2, t0).unwrap();
        // "b" is used later, so only "a" is idle too long.
        *t.touch("b", t0 + Duration::from_secs(30)).unwrap() += 10;
        assert!(t.expire(t0 + idle).is_empty());
        let gone = t.expire(t0 + idle + Duration::from_secs(1));
        assert_eq!(gone, vec![1]);
        assert_eq!(t.find(None, &key("1")), None);
        assert_eq!(t.expire(t0 + Duration::from_secs(91)), vec![12]);
        assert!(t.is_empty());
    }

    #[test]
    fn capped() {
        let now = Instant::now();
        let mut t = SessionTable::new(2, Duration::from_secs(1));
        t.insert("a".into(), key("1"), (), now).unwrap();
        t.insert("b".into(), key("2"), (), now).unwrap();
        assert_eq!(
            t.insert("c".into(), key("3"), (), now),
            Err(TableFull { limit: 2 })
        );
        // Replacing a session with the same key needs no free slot.
        assert_eq!(t.insert("a2".into(), key("1"), (), now), Ok(Some(())));
        assert_eq!(t.remove("a2"), Some(()));
        t.insert("a".into(), key("1"), (), now).unwrap();
        assert_eq!(t.remove("a"), Some(()));
        assert!(t.insert("c".into(), key("3"), (), now).is_ok());
        assert_eq!(t.drain().len(), 2);
    }
}
