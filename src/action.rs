//! The Set Action names and their numeric codes (the legacy contract's action table).
//!
//! ```
//! use tms::action::{map_action, ActionCode};
//! let action = map_action("tran-begin").unwrap();
//! assert_eq!((action.code.get(), action.canonical_name), (1, "Trans-Begin"));
//! assert!(ActionCode::try_from(7).is_err());
//! ```

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Lowest code a job may carry (the legacy schema documents 1-6).
pub const MIN_ACTION_CODE: i32 = 1;
/// Highest code a job may carry; no action name maps to 6.
pub const MAX_ACTION_CODE: i32 = 6;

/// A job's action code, 1 to 6: only valid codes can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ActionCode(i32);

impl ActionCode {
    /// The number stored in `jobs.action_code`.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl Default for ActionCode {
    /// Trans-Begin.
    fn default() -> ActionCode {
        ActionCode(MIN_ACTION_CODE)
    }
}

impl TryFrom<i32> for ActionCode {
    type Error = Error;
    /// Refuses codes outside 1 to 6 with `InvalidInput`.
    fn try_from(code: i32) -> Result<ActionCode> {
        if (MIN_ACTION_CODE..=MAX_ACTION_CODE).contains(&code) {
            Ok(ActionCode(code))
        } else {
            Err(Error::invalid(format!("action_code {code} is out of range {MIN_ACTION_CODE}-{MAX_ACTION_CODE}")))
        }
    }
}

impl std::fmt::Display for ActionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One row of the action table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Its code.
    pub code: ActionCode,
    /// The spelling the cluster documents.
    pub canonical_name: &'static str,
}

/// Every action the remote cluster knows. Codes are documented as 1-6 but no name maps to 6.
pub const ACTIONS: [Action; 5] = [
    Action { code: ActionCode(1), canonical_name: "Trans-Begin" },
    Action { code: ActionCode(2), canonical_name: "PE-Enable" },
    Action { code: ActionCode(3), canonical_name: "T-Enable" },
    Action { code: ActionCode(4), canonical_name: "PE-Finalize" },
    Action { code: ActionCode(5), canonical_name: "PE-Direct" },
];

/// Spellings reduced to lowercase letters and digits, with the code they mean. "Tran-Begin" is
/// a spelling the UI really sends, so it is listed rather than guessed at.
const SPELLINGS: [(&str, i32); 6] = [
    ("transbegin", 1),
    ("tranbegin", 1),
    ("peenable", 2),
    ("tenable", 3),
    ("pefinalize", 4),
    ("pedirect", 5),
];

/// Map an action name to its code: case-insensitive, ignoring `-`, `_` and spaces.
/// An unknown name is an `UnknownAction` error, never a guess; its message quotes at most the
/// start of the name (see [`crate::error::shown`]).
pub fn map_action(name: &str) -> Result<Action> {
    let key: String =
        name.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
    SPELLINGS
        .iter()
        .find(|(spelling, _)| *spelling == key)
        .and_then(|(_, code)| ACTIONS.iter().find(|a| a.code.get() == *code))
        .copied()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownAction,
                format!(
                    "unknown action {}: expected one of Trans-Begin, PE-Enable, T-Enable, \
                     PE-Finalize, PE-Direct",
                    crate::error::shown(name)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_seen_maps_to_its_code() {
        for (name, code) in [
            ("Trans-Begin", 1),
            ("Tran-Begin", 1),
            ("trans-begin", 1),
            ("tran-begin", 1),
            ("TRANS_BEGIN", 1),
            ("trans begin", 1),
            ("PE-Enable", 2),
            ("pe-enable", 2),
            ("T-Enable", 3),
            ("t_enable", 3),
            ("PE-Finalize", 4),
            ("pe finalize", 4),
            ("PE-Direct", 5),
            ("pe-direct", 5),
        ] {
            assert_eq!(map_action(name).unwrap().code.get(), code, "{name}");
        }
    }

    #[test]
    fn unknown_names_are_refused_not_guessed() {
        for name in ["", "Trans", "Begin", "Trans-Begins", "PE-Enabled", "6", "action_0", "T-Enable!", "Trans\t-Begin"] {
            let err = map_action(name).unwrap_err();
            assert_eq!(err.kind, ErrorKind::UnknownAction, "{name}");
            assert!(err.message.contains("unknown action"));
        }
    }
}
