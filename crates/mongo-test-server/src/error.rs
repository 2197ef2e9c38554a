//! Server-side command errors, shaped like the real server's `{ok: 0, ...}` replies.

use bson::{Bson, Document, doc};

#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: i32,
    pub code_name: &'static str,
    pub errmsg: String,
    pub labels: Vec<&'static str>,
}

impl CommandError {
    pub fn new(code: i32, code_name: &'static str, errmsg: impl Into<String>) -> Self {
        CommandError {
            code,
            code_name,
            errmsg: errmsg.into(),
            labels: Vec::new(),
        }
    }

    pub fn bad_value(msg: impl Into<String>) -> Self {
        Self::new(2, "BadValue", msg)
    }

    pub fn failed_to_parse(msg: impl Into<String>) -> Self {
        Self::new(9, "FailedToParse", msg)
    }

    pub fn type_mismatch(msg: impl Into<String>) -> Self {
        Self::new(14, "TypeMismatch", msg)
    }

    pub fn invalid_namespace(msg: impl Into<String>) -> Self {
        Self::new(73, "InvalidNamespace", msg)
    }

    pub fn cursor_not_found(id: i64) -> Self {
        Self::new(43, "CursorNotFound", format!("cursor id {id} not found"))
    }

    pub fn history_lost() -> Self {
        CommandError {
            labels: vec!["NonResumableChangeStreamError"],
            ..Self::new(
                286,
                "ChangeStreamHistoryLost",
                "Resume of change stream was not possible, as the resume point may no longer \
                 be in the oplog.",
            )
        }
    }

    pub fn to_document(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.clone(),
            "code": self.code,
            "codeName": self.code_name,
        };
        if !self.labels.is_empty() {
            let labels: Vec<Bson> = self.labels.iter().map(|l| Bson::from(*l)).collect();
            d.insert("errorLabels", labels);
        }
        d
    }
}

pub type CmdResult<T> = Result<T, CommandError>;
