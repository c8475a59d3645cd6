//! Semantic checks of a decoded SyncML DM 1.2 message, beyond what the model's parser requires.
//! Used by `omadm check` and by both session roles before they act on a message.

use std::collections::HashSet;
use std::fmt;

use crate::alert;
use crate::model::{Command, SyncMl, VER_DTD, VER_PROTO, alert_code};

/// One problem found in a message; `at` names the command (`SyncHdr` or `Name#CmdID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `SyncHdr`, or the command name and CmdID.
    pub at: String,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

fn problem(out: &mut Vec<Problem>, at: impl Into<String>, what: impl Into<String>) {
    out.push(Problem {
        at: at.into(),
        what: what.into(),
    });
}

/// Check a message against the rules of DM Protocol / RepPro 1.2 that a receiver relies on.
/// An empty result means the message is valid.
pub fn validate(msg: &SyncMl) -> Vec<Problem> {
    let mut out = Vec::new();
    let h = &msg.hdr;
    if h.ver_dtd.trim() != VER_DTD && h.ver_dtd.trim() != "1.1" {
        problem(
            &mut out,
            "SyncHdr",
            format!("VerDTD {:?} is not 1.2", h.ver_dtd),
        );
    }
    if !h.ver_proto.trim().eq_ignore_ascii_case(VER_PROTO)
        && !h.ver_proto.trim().eq_ignore_ascii_case("DM/1.1")
    {
        problem(
            &mut out,
            "SyncHdr",
            format!("VerProto {:?} is not DM/1.2", h.ver_proto),
        );
    }
    if h.session_id.trim().is_empty() {
        problem(&mut out, "SyncHdr", "SessionID is empty");
    }
    if h.target.loc_uri.trim().is_empty() {
        problem(&mut out, "SyncHdr", "Target/LocURI is empty");
    }
    if h.source.loc_uri.trim().is_empty() {
        problem(&mut out, "SyncHdr", "Source/LocURI is empty");
    }
    let mut seen = HashSet::new();
    check_commands(&msg.body.commands, &mut seen, &mut out);
    out
}

fn check_commands(cmds: &[Command], seen: &mut HashSet<u32>, out: &mut Vec<Problem>) {
    for c in cmds {
        let at = format!("{}#{}", c.name(), c.cmd_id());
        if c.cmd_id() == 0 {
            problem(out, &at, "CmdID must be a positive number");
        } else if !seen.insert(c.cmd_id()) {
            problem(out, &at, "CmdID is not unique in the message");
        }
        match c {
            Command::Alert(a) => {
                if a.code == alert_code::GENERIC
                    && let Err(e) = alert::parse(a)
                {
                    problem(out, &at, e.to_string());
                }
            }
            Command::Add(k)
            | Command::Replace(k)
            | Command::Delete(k)
            | Command::Get(k)
            | Command::Exec(k)
            | Command::Copy(k) => {
                if k.items.is_empty() {
                    problem(out, &at, "command has no Item");
                }
                // A client reports its own values (package 1 DevInfo) as Replace with Item/Source.
                let source_ok = matches!(c, Command::Add(_) | Command::Replace(_));
                for (i, item) in k.items.iter().enumerate() {
                    let has = |u: Option<&str>| u.is_some_and(|u| !u.trim().is_empty());
                    if !(has(item.target_uri()) || (source_ok && has(item.source_uri()))) {
                        problem(out, &at, format!("Item {i} has no Target/LocURI"));
                    }
                }
            }
            Command::Atomic(k) | Command::Sequence(k) => {
                check_commands(&k.commands, seen, out);
            }
            Command::Status(s) => {
                if s.cmd.trim().is_empty() {
                    problem(out, &at, "Status has an empty Cmd");
                }
                if !(100..=599).contains(&s.code) && !(1000..=1999).contains(&s.code) {
                    problem(out, &at, format!("status code {} out of range", s.code));
                }
            }
            Command::Results(r) => {
                if r.items.is_empty() {
                    problem(out, &at, "Results has no Item");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn msg() -> SyncMl {
        SyncMl::new(SyncHdr::new(
            "1",
            1,
            Location::new("https://s"),
            Location::new("IMEI:1"),
        ))
    }

    #[test]
    fn a_good_message_has_no_problem() {
        let m = msg()
            .with(Command::alert(1201))
            .with(Command::replace_chr("./DevInfo/DevId", "IMEI:1"))
            .finish();
        assert!(validate(&m).is_empty(), "{:?}", validate(&m));
    }

    #[test]
    fn each_rule_is_reported() {
        let mut m = msg();
        m.hdr.ver_proto = "DM/9".into();
        m.hdr.session_id = String::new();
        m.body.commands.push(Command::alert(1201));
        m.body.commands.push(Command::get("./A"));
        m.body.commands.push(Command::Get(ItemCmd {
            cmd_id: 3,
            ..ItemCmd::default()
        }));
        m.body.commands.push(Command::Alert(Alert {
            cmd_id: 4,
            code: 1226,
            items: vec![Item::data("x")],
            ..Alert::default()
        }));
        let p: Vec<String> = validate(&m).iter().map(ToString::to_string).collect();
        assert!(p.iter().any(|s| s.contains("VerProto")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("SessionID")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("CmdID must be")), "{p:?}");
        assert!(
            p.iter().any(|s| s.contains("Get#3: command has no Item")),
            "{p:?}"
        );
        assert!(p.iter().any(|s| s.contains("Meta/Type")), "{p:?}");
    }
}
