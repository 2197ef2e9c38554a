//! Decoder for PostgreSQL's `pgoutput` logical replication protocol, versions 1 and 2.
//!
//! Scope: `proto_version '1'`, and `'2'` with `streaming` (transactions sent while they run,
//! PostgreSQL 14+), without `binary`. The input is the payload of one XLogData message; the
//! decoder is pure (no I/O, no relation cache) so it can be tested byte by byte and never
//! panics on hostile input.
//!
//! Between Stream Start and Stream Stop, the data messages carry the xid of their
//! (sub)transaction after the tag: [`decode_in`] is told whether a stream is open.
//!
//! Decoding is strict: every message has an exact layout, so leftover bytes are reported as an
//! error. That turns a protocol mismatch (a streamed message read as if outside a stream) into
//! a clear error instead of silently misread fields.

use std::fmt;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800 * 1_000_000;

/// Converts a PostgreSQL timestamp (microseconds since 2000-01-01 UTC) to
/// microseconds since the Unix epoch. Saturates instead of overflowing so
/// PostgreSQL's `infinity` sentinels (i64::MAX / i64::MIN) stay extreme.
pub fn pg_timestamp_to_unix_micros(pg_micros: i64) -> i64 {
    pg_micros.saturating_add(PG_EPOCH_OFFSET_MICROS)
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(TypeMessage),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(LogicalMessage),
    /// The start of a block of a streamed transaction's changes ('S').
    StreamStart {
        xid: u32,
        first_segment: bool,
    },
    /// The end of that block ('E').
    StreamStop,
    StreamCommit(StreamCommit),
    /// A streamed transaction rolled back ('A'): all of it when `subxid == xid`, else that
    /// subtransaction.
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
}

/// A streamed transaction committed ('c').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: u32,
    pub commit_lsn: u64,
    /// LSN just past the commit record; the position to acknowledge.
    pub end_lsn: u64,
    /// Commit time, microseconds since 2000-01-01.
    pub commit_time: i64,
}

/// Start of a transaction ('B').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: u64,
    /// Commit time, microseconds since 2000-01-01 (see [`pg_timestamp_to_unix_micros`]).
    pub commit_time: i64,
    pub xid: u32,
}

/// End of a transaction ('C').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Currently always 0 in PostgreSQL; kept for forward compatibility.
    pub flags: u8,
    pub commit_lsn: u64,
    /// LSN just past the commit record; the position to acknowledge.
    pub end_lsn: u64,
    /// Microseconds since 2000-01-01.
    pub commit_time: i64,
}

/// Replication origin of the current transaction ('O').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// LSN of the commit on the origin server.
    pub commit_lsn: u64,
    pub name: String,
}

/// Table schema ('R'), sent before the first change to a relation in a
/// session and again whenever its definition changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    /// Schema name; PostgreSQL sends an empty string for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
}

/// `REPLICA IDENTITY` setting of a relation; decides what old-row data
/// UPDATE and DELETE carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// 'd': primary key columns.
    Default,
    /// 'n': no old-row data at all.
    Nothing,
    /// 'f': the whole old row.
    Full,
    /// 'i': columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(Self::Default),
            b'n' => Some(Self::Nothing),
            b'f' => Some(Self::Full),
            b'i' => Some(Self::Index),
            _ => None,
        }
    }

    /// The protocol character (`relreplident`).
    pub fn as_char(self) -> char {
        match self {
            Self::Default => 'd',
            Self::Nothing => 'n',
            Self::Full => 'f',
            Self::Index => 'i',
        }
    }
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity key (flag bit 1).
    pub is_key: bool,
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod`, e.g. length limit of `varchar(n)`; -1 when none.
    pub type_modifier: i32,
}

/// Data type description ('Y'), sent for non-built-in types before use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    pub oid: u32,
    /// Empty string for `pg_catalog`.
    pub namespace: String,
    pub name: String,
}

/// Row inserted ('I').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub relation_oid: u32,
    pub new: Tuple,
}

/// Row updated ('U').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub relation_oid: u32,
    /// Absent when the key did not change and replica identity is not FULL.
    pub old: Option<OldTuple>,
    pub new: Tuple,
}

/// Row deleted ('D').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub relation_oid: u32,
    pub old: OldTuple,
}

/// Old-row image of an UPDATE or DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// 'K': only replica identity key columns carry values; others are `Null`.
    Key(Tuple),
    /// 'O': the full old row (replica identity FULL).
    Full(Tuple),
}

impl OldTuple {
    pub fn tuple(&self) -> &Tuple {
        match self {
            Self::Key(t) | Self::Full(t) => t,
        }
    }

    pub fn into_tuple(self) -> Tuple {
        match self {
            Self::Key(t) | Self::Full(t) => t,
        }
    }
}

/// Tables truncated ('T').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub cascade: bool,
    pub restart_identity: bool,
    pub relation_oids: Vec<u32>,
}

/// Output of `pg_logical_emit_message` ('M').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    pub transactional: bool,
    pub lsn: u64,
    pub prefix: String,
    /// Arbitrary bytes; the emitter decides the encoding.
    pub content: Vec<u8>,
}

/// Column values of one row, in relation column order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuple(pub Vec<TupleValue>);

/// One column value inside a [`Tuple`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// 'n'
    Null,
    /// 'u': TOASTed value that did not change and was not sent.
    UnchangedToast,
    /// 't': PostgreSQL text output format.
    Text(String),
    /// 'b': binary send format (only with `binary 'true'`).
    Binary(Vec<u8>),
}

/// Why a payload could not be decoded, what was being read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pgoutput: cannot decode {what} at byte offset {offset}: {kind}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    /// The protocol field being read, e.g. "text value length".
    pub what: &'static str,
    /// Offset of that field within the payload.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("unexpected end of message (need {needed} bytes, {available} left)")]
    UnexpectedEof { needed: usize, available: usize },
    #[error("string has no NUL terminator")]
    UnterminatedString,
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("negative length or count {0}")]
    NegativeLength(i32),
    #[error("unknown message tag {}{}", ShowByte(*.0), tag_hint(*.0))]
    UnknownMessageTag(u8),
    #[error("unexpected byte {} (expected {expected})", ShowByte(*.found))]
    UnexpectedByte { found: u8, expected: &'static str },
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Renders a protocol byte both as a character (when printable) and in hex,
/// since tags are letters but garbage usually is not.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}' (0x{:02x})", char::from(self.0), self.0)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Points at the likely misconfiguration when a newer-protocol tag shows up.
fn tag_hint(tag: u8) -> &'static str {
    match tag {
        b'b' | b'P' | b'K' | b'r' | b'p' => {
            " (a two-phase commit message; two-phase decoding is not asked for)"
        }
        _ => "",
    }
}

fn unexpected_byte(
    what: &'static str,
    at: usize,
    found: u8,
    expected: &'static str,
) -> DecodeError {
    DecodeError {
        kind: DecodeErrorKind::UnexpectedByte { found, expected },
        what,
        offset: at,
    }
}

/// Decodes the payload of one XLogData message outside a stream.
pub fn decode(payload: &[u8]) -> Result<PgOutputMessage, DecodeError> {
    decode_in(payload, false).map(|(_, message)| message)
}

/// Decodes the payload of one XLogData message; `in_stream`: between Stream Start and Stream
/// Stop, where data messages carry their (sub)transaction's xid, returned with the message.
pub fn decode_in(
    payload: &[u8],
    in_stream: bool,
) -> Result<(Option<u32>, PgOutputMessage), DecodeError> {
    let mut cur = Cursor::new(payload);
    let tag = cur.u8("message tag")?;
    let xid = match tag {
        b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M' if in_stream => {
            Some(cur.u32("streamed transaction xid")?)
        }
        _ => None,
    };
    let msg = match tag {
        b'S' => PgOutputMessage::StreamStart {
            xid: cur.u32("stream start xid")?,
            first_segment: cur.u8("stream start first-segment flag")? == 1,
        },
        b'E' => PgOutputMessage::StreamStop,
        b'c' => {
            let xid = cur.u32("stream commit xid")?;
            cur.u8("stream commit flags")?;
            PgOutputMessage::StreamCommit(StreamCommit {
                xid,
                commit_lsn: cur.u64("stream commit LSN")?,
                end_lsn: cur.u64("stream commit end LSN")?,
                commit_time: cur.i64("stream commit timestamp")?,
            })
        }
        b'A' => PgOutputMessage::StreamAbort {
            xid: cur.u32("stream abort xid")?,
            subxid: cur.u32("stream abort subtransaction xid")?,
        },
        b'B' => PgOutputMessage::Begin(Begin {
            final_lsn: cur.u64("begin final LSN")?,
            commit_time: cur.i64("begin commit timestamp")?,
            xid: cur.u32("begin xid")?,
        }),
        b'C' => PgOutputMessage::Commit(Commit {
            flags: cur.u8("commit flags")?,
            commit_lsn: cur.u64("commit LSN")?,
            end_lsn: cur.u64("commit end LSN")?,
            commit_time: cur.i64("commit timestamp")?,
        }),
        b'O' => PgOutputMessage::Origin(Origin {
            commit_lsn: cur.u64("origin commit LSN")?,
            name: cur.string("origin name")?,
        }),
        b'R' => PgOutputMessage::Relation(cur.relation()?),
        b'Y' => PgOutputMessage::Type(TypeMessage {
            oid: cur.u32("type OID")?,
            namespace: cur.string("type namespace")?,
            name: cur.string("type name")?,
        }),
        b'I' => {
            let relation_oid = cur.u32("insert relation OID")?;
            cur.expect(b'N', "insert new-tuple marker", "'N'")?;
            PgOutputMessage::Insert(Insert {
                relation_oid,
                new: cur.tuple()?,
            })
        }
        b'U' => cur.update()?,
        b'D' => {
            let relation_oid = cur.u32("delete relation OID")?;
            let at = cur.offset();
            let old = match cur.u8("delete old-tuple marker")? {
                b'K' => OldTuple::Key(cur.tuple()?),
                b'O' => OldTuple::Full(cur.tuple()?),
                found => {
                    return Err(unexpected_byte(
                        "delete old-tuple marker",
                        at,
                        found,
                        "'K' or 'O'",
                    ));
                }
            };
            PgOutputMessage::Delete(Delete { relation_oid, old })
        }
        b'T' => cur.truncate()?,
        b'M' => {
            let flags = cur.u8("message flags")?;
            let lsn = cur.u64("message LSN")?;
            let prefix = cur.string("message prefix")?;
            let len = cur.len_i32("message content length")?;
            let content = cur.bytes(len, "message content")?.to_vec();
            PgOutputMessage::Message(LogicalMessage {
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content,
            })
        }
        other => {
            return Err(DecodeError {
                kind: DecodeErrorKind::UnknownMessageTag(other),
                what: "message tag",
                offset: 0,
            });
        }
    };
    cur.finish()?;
    Ok((xid, msg))
}

/// Big-endian reader over the payload. `rest` is always a suffix of the
/// input, so the current offset is `len - rest.len()` with no extra state.
struct Cursor<'a> {
    rest: &'a [u8],
    len: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            len: buf.len(),
        }
    }

    fn offset(&self) -> usize {
        // Cannot underflow (rest is a suffix); saturating keeps that obvious.
        self.len.saturating_sub(self.rest.len())
    }

    fn err(&self, what: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            what,
            offset: self.offset(),
        }
    }

    fn eof(&self, what: &'static str, needed: usize) -> DecodeError {
        self.err(
            what,
            DecodeErrorKind::UnexpectedEof {
                needed,
                available: self.rest.len(),
            },
        )
    }

    /// Borrows `n` bytes. Checking against the remaining input before any
    /// copy is what keeps a lying length field from allocating.
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(n) else {
            return Err(self.eof(what, n));
        };
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let Some((head, tail)) = self.rest.split_first_chunk::<N>() else {
            return Err(self.eof(what, N));
        };
        self.rest = tail;
        Ok(*head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[b]| b)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.array(what).map(i16::from_be_bytes)
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.array(what).map(i32::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_be_bytes)
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.array(what).map(i64::from_be_bytes)
    }

    /// Rejects a negative length/count, reporting the offset of the field
    /// itself (`at`) rather than of what follows it.
    fn non_negative(value: i32, at: usize, what: &'static str) -> Result<usize, DecodeError> {
        usize::try_from(value).map_err(|_| DecodeError {
            kind: DecodeErrorKind::NegativeLength(value),
            what,
            offset: at,
        })
    }

    fn len_i32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.offset();
        let v = self.i32(what)?;
        Self::non_negative(v, at, what)
    }

    fn count_i16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.offset();
        let v = self.i16(what)?;
        Self::non_negative(i32::from(v), at, what)
    }

    fn expect(
        &mut self,
        want: u8,
        what: &'static str,
        expected: &'static str,
    ) -> Result<(), DecodeError> {
        let at = self.offset();
        let found = self.u8(what)?;
        if found == want {
            Ok(())
        } else {
            Err(DecodeError {
                kind: DecodeErrorKind::UnexpectedByte { found, expected },
                what,
                offset: at,
            })
        }
    }

    fn utf8(raw: &'a [u8], at: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(raw).map_err(|e| DecodeError {
            kind: DecodeErrorKind::InvalidUtf8,
            what,
            // Point at the offending byte, not just the start of the field.
            offset: at.saturating_add(e.valid_up_to()),
        })
    }

    /// NUL-terminated string, borrowed.
    fn cstr(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.offset();
        // splitn yields a second part only if a NUL was found.
        let mut parts = self.rest.splitn(2, |&b| b == 0);
        let raw = parts.next().unwrap_or_default();
        let Some(after) = parts.next() else {
            return Err(self.err(what, DecodeErrorKind::UnterminatedString));
        };
        let s = Self::utf8(raw, at, what)?;
        self.rest = after;
        Ok(s)
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.cstr(what).map(str::to_owned)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err(
                "end of message",
                DecodeErrorKind::TrailingBytes(self.rest.len()),
            ))
        }
    }

    fn relation(&mut self) -> Result<Relation, DecodeError> {
        let oid = self.u32("relation OID")?;
        let namespace = self.string("relation namespace")?;
        let name = self.string("relation name")?;
        let at = self.offset();
        let ident = self.u8("relation replica identity")?;
        let replica_identity = ReplicaIdentity::from_byte(ident).ok_or_else(|| {
            unexpected_byte(
                "relation replica identity",
                at,
                ident,
                "'d', 'n', 'f' or 'i'",
            )
        })?;
        let ncols = self.count_i16("relation column count")?;
        // A column needs at least 10 bytes on the wire; bounding by what is
        // left keeps a bogus count from reserving memory up front.
        let mut columns = Vec::with_capacity(ncols.min(self.rest.len() / 10));
        for _ in 0..ncols {
            let flags = self.u8("column flags")?;
            columns.push(Column {
                is_key: flags & 1 != 0,
                name: self.string("column name")?,
                type_oid: self.u32("column type OID")?,
                type_modifier: self.i32("column type modifier")?,
            });
        }
        Ok(Relation {
            oid,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn update(&mut self) -> Result<PgOutputMessage, DecodeError> {
        let relation_oid = self.u32("update relation OID")?;
        let at = self.offset();
        let (old, new) = match self.u8("update tuple marker")? {
            b'K' => {
                let old = OldTuple::Key(self.tuple()?);
                self.expect(b'N', "update new-tuple marker", "'N'")?;
                (Some(old), self.tuple()?)
            }
            b'O' => {
                let old = OldTuple::Full(self.tuple()?);
                self.expect(b'N', "update new-tuple marker", "'N'")?;
                (Some(old), self.tuple()?)
            }
            b'N' => (None, self.tuple()?),
            found => {
                return Err(unexpected_byte(
                    "update tuple marker",
                    at,
                    found,
                    "'K', 'O' or 'N'",
                ));
            }
        };
        Ok(PgOutputMessage::Update(Update {
            relation_oid,
            old,
            new,
        }))
    }

    fn truncate(&mut self) -> Result<PgOutputMessage, DecodeError> {
        let at = self.offset();
        let n = self.i32("truncate relation count")?;
        let n = Self::non_negative(n, at, "truncate relation count")?;
        let options = self.u8("truncate options")?;
        // Borrow all OIDs at once: one bounds check, and the count can never
        // allocate more than the payload already holds.
        let Some(total) = n.checked_mul(4) else {
            return Err(self.eof("truncate relation OIDs", usize::MAX));
        };
        let raw = self.bytes(total, "truncate relation OIDs")?;
        let relation_oids = raw
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
            .collect();
        Ok(PgOutputMessage::Truncate(Truncate {
            cascade: options & 1 != 0,
            restart_identity: options & 2 != 0,
            relation_oids,
        }))
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let ncols = self.count_i16("tuple column count")?;
        // Every column takes at least its kind byte, so the remaining input
        // bounds the allocation even when the count lies.
        let mut values = Vec::with_capacity(ncols.min(self.rest.len()));
        for _ in 0..ncols {
            let at = self.offset();
            let value = match self.u8("tuple column kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.len_i32("text value length")?;
                    let start = self.offset();
                    let raw = self.bytes(len, "text value")?;
                    TupleValue::Text(Self::utf8(raw, start, "text value")?.to_owned())
                }
                b'b' => {
                    let len = self.len_i32("binary value length")?;
                    TupleValue::Binary(self.bytes(len, "binary value")?.to_vec())
                }
                found => {
                    return Err(unexpected_byte(
                        "tuple column kind",
                        at,
                        found,
                        "'n', 'u', 't' or 'b'",
                    ));
                }
            };
            values.push(value);
        }
        Ok(Tuple(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Big-endian payload builder, so tests read like the protocol docs.
    #[derive(Default)]
    struct Buf(Vec<u8>);

    impl Buf {
        fn tag(t: u8) -> Self {
            Buf(vec![t])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn cstr(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        fn raw(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn text(self, s: &str) -> Self {
            let len = i32::try_from(s.len()).expect("test string fits i32");
            self.u8(b't').i32(len).raw(s.as_bytes())
        }
        fn done(self) -> Vec<u8> {
            self.0
        }
    }

    fn text(s: &str) -> TupleValue {
        TupleValue::Text(s.to_owned())
    }

    fn err_kind(payload: &[u8]) -> DecodeErrorKind {
        decode(payload).expect_err("payload should not decode").kind
    }

    fn begin_payload() -> Vec<u8> {
        Buf::tag(b'B')
            .u64(0x0000_0001_6B37_4D48)
            .i64(735_000_000_123_456)
            .u32(771)
            .done()
    }

    fn relation_payload() -> Vec<u8> {
        Buf::tag(b'R')
            .u32(16_385)
            .cstr("public")
            .cstr("users")
            .u8(b'd')
            .i16(3)
            .u8(1)
            .cstr("id")
            .u32(23)
            .i32(-1)
            .u8(0)
            .cstr("email")
            .u32(1043)
            .i32(259)
            .u8(0)
            .cstr("bio")
            .u32(25)
            .i32(-1)
            .done()
    }

    /// Tuple with one of each column kind.
    fn mixed_tuple(b: Buf) -> Buf {
        b.i16(4)
            .u8(b'n')
            .u8(b'u')
            .text("héllo")
            .u8(b'b')
            .i32(2)
            .raw(&[0xde, 0xad])
    }

    fn update_full_payload() -> Vec<u8> {
        let b = Buf::tag(b'U')
            .u32(16_385)
            .u8(b'O')
            .i16(2)
            .text("1")
            .text("old");
        b.u8(b'N').i16(2).text("1").text("new").done()
    }

    /// Every well-formed sample payload, for the truncation sweep.
    fn all_valid_payloads() -> Vec<Vec<u8>> {
        vec![
            begin_payload(),
            Buf::tag(b'C').u8(0).u64(1).u64(2).i64(3).done(),
            Buf::tag(b'O').u64(9).cstr("node_a").done(),
            relation_payload(),
            Buf::tag(b'Y')
                .u32(70_000)
                .cstr("public")
                .cstr("mood")
                .done(),
            mixed_tuple(Buf::tag(b'I').u32(1).u8(b'N')).done(),
            update_full_payload(),
            Buf::tag(b'D').u32(1).u8(b'K').i16(1).text("7").done(),
            Buf::tag(b'T').i32(2).u8(3).u32(10).u32(11).done(),
            Buf::tag(b'M')
                .u8(1)
                .u64(5)
                .cstr("p")
                .i32(3)
                .raw(b"abc")
                .done(),
        ]
    }

    #[test]
    fn decodes_begin() {
        assert_eq!(
            decode(&begin_payload()).unwrap(),
            PgOutputMessage::Begin(Begin {
                final_lsn: 0x0000_0001_6B37_4D48,
                commit_time: 735_000_000_123_456,
                xid: 771,
            })
        );
    }

    #[test]
    fn decodes_commit() {
        let p = Buf::tag(b'C').u8(0).u64(0x10).u64(0x48).i64(-5).done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Commit(Commit {
                flags: 0,
                commit_lsn: 0x10,
                end_lsn: 0x48,
                commit_time: -5,
            })
        );
    }

    #[test]
    fn decodes_origin() {
        let p = Buf::tag(b'O').u64(u64::MAX).cstr("node_a").done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Origin(Origin {
                commit_lsn: u64::MAX,
                name: "node_a".into(),
            })
        );
    }

    #[test]
    fn decodes_relation() {
        let PgOutputMessage::Relation(r) = decode(&relation_payload()).unwrap() else {
            panic!("expected a relation");
        };
        assert_eq!(r.oid, 16_385);
        assert_eq!(r.namespace, "public");
        assert_eq!(r.name, "users");
        assert_eq!(r.replica_identity, ReplicaIdentity::Default);
        assert_eq!(
            r.columns,
            vec![
                Column {
                    is_key: true,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1,
                },
                Column {
                    is_key: false,
                    name: "email".into(),
                    type_oid: 1043,
                    type_modifier: 259,
                },
                Column {
                    is_key: false,
                    name: "bio".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
            ]
        );
    }

    #[test]
    fn decodes_every_replica_identity_and_rejects_unknown() {
        let cases = [
            (b'd', ReplicaIdentity::Default),
            (b'n', ReplicaIdentity::Nothing),
            (b'f', ReplicaIdentity::Full),
            (b'i', ReplicaIdentity::Index),
        ];
        for (byte, want) in cases {
            let p = Buf::tag(b'R')
                .u32(1)
                .cstr("")
                .cstr("t")
                .u8(byte)
                .i16(0)
                .done();
            let PgOutputMessage::Relation(r) = decode(&p).unwrap() else {
                panic!("expected a relation");
            };
            assert_eq!(r.replica_identity, want);
            assert_eq!(r.replica_identity.as_char(), char::from(byte));
            assert!(r.namespace.is_empty(), "pg_catalog is sent as empty");
        }
        let p = Buf::tag(b'R')
            .u32(1)
            .cstr("")
            .cstr("t")
            .u8(b'x')
            .i16(0)
            .done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.what, "relation replica identity");
        assert_eq!(e.offset, 8);
    }

    #[test]
    fn decodes_type() {
        let p = Buf::tag(b'Y')
            .u32(70_000)
            .cstr("public")
            .cstr("mood")
            .done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Type(TypeMessage {
                oid: 70_000,
                namespace: "public".into(),
                name: "mood".into(),
            })
        );
    }

    #[test]
    fn decodes_insert_with_null_toast_text_and_binary() {
        let p = mixed_tuple(Buf::tag(b'I').u32(16_385).u8(b'N')).done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Insert(Insert {
                relation_oid: 16_385,
                new: Tuple(vec![
                    TupleValue::Null,
                    TupleValue::UnchangedToast,
                    text("héllo"),
                    TupleValue::Binary(vec![0xde, 0xad]),
                ]),
            })
        );
    }

    #[test]
    fn decodes_empty_text_and_zero_column_tuple() {
        let p = Buf::tag(b'I').u32(1).u8(b'N').i16(1).text("").done();
        let PgOutputMessage::Insert(i) = decode(&p).unwrap() else {
            panic!("expected an insert");
        };
        assert_eq!(i.new, Tuple(vec![text("")]));

        let p = Buf::tag(b'I').u32(1).u8(b'N').i16(0).done();
        let PgOutputMessage::Insert(i) = decode(&p).unwrap() else {
            panic!("expected an insert");
        };
        assert_eq!(i.new, Tuple::default());
    }

    #[test]
    fn decodes_update_with_full_old_row() {
        assert_eq!(
            decode(&update_full_payload()).unwrap(),
            PgOutputMessage::Update(Update {
                relation_oid: 16_385,
                old: Some(OldTuple::Full(Tuple(vec![text("1"), text("old")]))),
                new: Tuple(vec![text("1"), text("new")]),
            })
        );
    }

    #[test]
    fn decodes_update_with_key_old_row() {
        let b = Buf::tag(b'U').u32(5).u8(b'K').i16(2).text("1").u8(b'n');
        let p = b.u8(b'N').i16(2).text("2").u8(b'u').done();
        let PgOutputMessage::Update(u) = decode(&p).unwrap() else {
            panic!("expected an update");
        };
        let old = u.old.expect("old key tuple");
        assert!(matches!(old, OldTuple::Key(_)));
        assert_eq!(old.tuple(), &Tuple(vec![text("1"), TupleValue::Null]));
        assert_eq!(u.new, Tuple(vec![text("2"), TupleValue::UnchangedToast]));
    }

    #[test]
    fn decodes_update_without_old_row() {
        let p = Buf::tag(b'U').u32(5).u8(b'N').i16(1).text("x").done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Update(Update {
                relation_oid: 5,
                old: None,
                new: Tuple(vec![text("x")]),
            })
        );
    }

    #[test]
    fn update_with_old_row_requires_new_marker() {
        let p = Buf::tag(b'U').u32(5).u8(b'K').i16(0).u8(b'X').i16(0).done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.what, "update new-tuple marker");
        assert_eq!(e.offset, 8);
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnexpectedByte {
                found: b'X',
                expected: "'N'"
            }
        );
    }

    #[test]
    fn decodes_delete_key_and_full() {
        let p = Buf::tag(b'D').u32(9).u8(b'K').i16(1).text("7").done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Delete(Delete {
                relation_oid: 9,
                old: OldTuple::Key(Tuple(vec![text("7")])),
            })
        );
        let p = Buf::tag(b'D')
            .u32(9)
            .u8(b'O')
            .i16(2)
            .text("7")
            .u8(b'n')
            .done();
        let PgOutputMessage::Delete(d) = decode(&p).unwrap() else {
            panic!("expected a delete");
        };
        assert_eq!(d.old.into_tuple(), Tuple(vec![text("7"), TupleValue::Null]));
        // 'N' is not a valid old-row marker for DELETE.
        let p = Buf::tag(b'D').u32(9).u8(b'N').i16(0).done();
        assert!(matches!(
            err_kind(&p),
            DecodeErrorKind::UnexpectedByte { found: b'N', .. }
        ));
    }

    #[test]
    fn decodes_truncate_with_two_relations() {
        let p = Buf::tag(b'T').i32(2).u8(3).u32(16_385).u32(16_390).done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Truncate(Truncate {
                cascade: true,
                restart_identity: true,
                relation_oids: vec![16_385, 16_390],
            })
        );
        let p = Buf::tag(b'T').i32(1).u8(2).u32(1).done();
        let PgOutputMessage::Truncate(t) = decode(&p).unwrap() else {
            panic!("expected a truncate");
        };
        assert!(!t.cascade);
        assert!(t.restart_identity);
    }

    #[test]
    fn decodes_logical_message() {
        let p = Buf::tag(b'M')
            .u8(1)
            .u64(0xABCD)
            .cstr("audit")
            .i32(4)
            .raw(&[0, 1, 0xff, b'z'])
            .done();
        assert_eq!(
            decode(&p).unwrap(),
            PgOutputMessage::Message(LogicalMessage {
                transactional: true,
                lsn: 0xABCD,
                prefix: "audit".into(),
                content: vec![0, 1, 0xff, b'z'],
            })
        );
        let p = Buf::tag(b'M').u8(0).u64(1).cstr("").i32(0).done();
        let PgOutputMessage::Message(m) = decode(&p).unwrap() else {
            panic!("expected a message");
        };
        assert!(!m.transactional);
        assert!(m.content.is_empty());
    }

    #[test]
    fn unknown_tag_is_named_in_error() {
        let e = decode(b"Zjunk").unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::UnknownMessageTag(b'Z'));
        assert!(e.to_string().contains("'Z' (0x5a)"), "{e}");

        let e = decode(&[0x00]).unwrap_err();
        assert!(e.to_string().contains("0x00"), "{e}");

        // Two-phase tags get a hint about the misconfiguration.
        let e = decode(b"P\0\0\0\x01").unwrap_err();
        assert!(e.to_string().contains("two-phase"), "{e}");
    }

    #[test]
    fn streamed_transactions_decode_with_their_xids() {
        assert_eq!(
            decode(&Buf::tag(b'S').u32(901).u8(1).done()).unwrap(),
            PgOutputMessage::StreamStart {
                xid: 901,
                first_segment: true
            }
        );
        assert_eq!(decode(b"E").unwrap(), PgOutputMessage::StreamStop);
        let commit = Buf::tag(b'c')
            .u32(901)
            .u8(0)
            .u64(0x1_0000_0010)
            .u64(0x1_0000_0040)
            .i64(735_000_000_123_456)
            .done();
        assert_eq!(
            decode(&commit).unwrap(),
            PgOutputMessage::StreamCommit(StreamCommit {
                xid: 901,
                commit_lsn: 0x1_0000_0010,
                end_lsn: 0x1_0000_0040,
                commit_time: 735_000_000_123_456,
            })
        );
        assert_eq!(
            decode(&Buf::tag(b'A').u32(901).u32(905).done()).unwrap(),
            PgOutputMessage::StreamAbort {
                xid: 901,
                subxid: 905
            }
        );
        // Inside a stream, a change carries its subtransaction's xid before its fields.
        let insert = Buf::tag(b'I').u32(905).u32(16_385).u8(b'N').i16(0).done();
        let (xid, message) = decode_in(&insert, true).unwrap();
        assert_eq!(xid, Some(905));
        assert!(
            matches!(
                message,
                PgOutputMessage::Insert(Insert {
                    relation_oid: 16_385,
                    ..
                })
            ),
            "{message:?}"
        );
        // Read as if outside a stream, the xid is taken for the relation and the rest does
        // not fit: an error, not a misread change.
        assert!(decode(&insert).is_err());
        let (xid, _) = decode_in(b"E", true).unwrap();
        assert_eq!(xid, None, "stream control messages carry no extra xid");
    }

    #[test]
    fn empty_payload_is_an_error() {
        let e = decode(&[]).unwrap_err();
        assert_eq!(e.what, "message tag");
        assert_eq!(e.offset, 0);
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnexpectedEof {
                needed: 1,
                available: 0
            }
        );
    }

    #[test]
    fn every_truncation_of_valid_payloads_is_an_error() {
        for payload in all_valid_payloads() {
            decode(&payload).expect("sample payload is valid");
            for cut in 0..payload.len() {
                let prefix = payload.get(..cut).unwrap_or_default();
                assert!(
                    decode(prefix).is_err(),
                    "prefix of length {cut} of {payload:?} decoded"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut p = begin_payload();
        p.push(0);
        let e = decode(&p).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TrailingBytes(1));
        assert_eq!(e.offset, 21);
    }

    #[test]
    fn huge_length_fields_fail_without_allocating() {
        // If any of these reserved `len` bytes up front the test would abort
        // on allocation or take visibly long; instead each fails fast.
        let text = Buf::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(i32::MAX)
            .raw(b"ab")
            .done();
        let e = decode(&text).unwrap_err();
        assert_eq!(e.what, "text value");
        assert_eq!(e.offset, 13);
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnexpectedEof {
                needed: i32::MAX as usize,
                available: 2
            }
        );

        let bin = Buf::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b'b')
            .i32(i32::MAX)
            .done();
        assert!(matches!(
            err_kind(&bin),
            DecodeErrorKind::UnexpectedEof { .. }
        ));

        let msg = Buf::tag(b'M').u8(0).u64(1).cstr("p").i32(i32::MAX).done();
        assert!(matches!(
            err_kind(&msg),
            DecodeErrorKind::UnexpectedEof { .. }
        ));

        let trunc = Buf::tag(b'T').i32(i32::MAX).u8(0).u32(1).done();
        assert!(matches!(
            err_kind(&trunc),
            DecodeErrorKind::UnexpectedEof { .. }
        ));

        let cols = Buf::tag(b'I').u32(1).u8(b'N').i16(i16::MAX).u8(b'n').done();
        assert!(matches!(
            err_kind(&cols),
            DecodeErrorKind::UnexpectedEof { .. }
        ));

        let rel = Buf::tag(b'R')
            .u32(1)
            .cstr("")
            .cstr("t")
            .u8(b'd')
            .i16(i16::MAX)
            .done();
        assert!(matches!(
            err_kind(&rel),
            DecodeErrorKind::UnexpectedEof { .. }
        ));
    }

    #[test]
    fn negative_lengths_and_counts_are_errors() {
        let p = Buf::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(-1)
            .done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::NegativeLength(-1));
        assert_eq!(e.what, "text value length");
        assert_eq!(e.offset, 9);

        let p = Buf::tag(b'I').u32(1).u8(b'N').i16(-3).done();
        assert_eq!(err_kind(&p), DecodeErrorKind::NegativeLength(-3));

        let p = Buf::tag(b'T').i32(i32::MIN).u8(0).done();
        assert_eq!(err_kind(&p), DecodeErrorKind::NegativeLength(i32::MIN));
    }

    #[test]
    fn invalid_utf8_is_an_error_with_offset() {
        let p = Buf::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(3)
            .raw(&[b'o', b'k', 0xff])
            .done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::InvalidUtf8);
        assert_eq!(e.what, "text value");
        assert_eq!(e.offset, 15, "points at the bad byte");

        let p = Buf::tag(b'O').u64(1).raw(&[0xc3, 0x28, 0]).done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::InvalidUtf8);
        assert_eq!(e.what, "origin name");
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let p = Buf::tag(b'Y').u32(1).cstr("public").raw(b"mood").done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::UnterminatedString);
        assert_eq!(e.what, "type name");
        assert_eq!(e.offset, 12);
    }

    #[test]
    fn unknown_tuple_kind_is_an_error() {
        let p = Buf::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(2)
            .u8(b'n')
            .u8(b'x')
            .done();
        let e = decode(&p).unwrap_err();
        assert_eq!(e.what, "tuple column kind");
        assert_eq!(e.offset, 9);
        assert!(e.to_string().contains("'x'"), "{e}");
    }

    #[test]
    fn error_message_names_field_and_offset() {
        let e = decode(&[b'B', 0, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pgoutput: cannot decode begin final LSN at byte offset 1: \
             unexpected end of message (need 8 bytes, 2 left)"
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        // Deterministic xorshift so failures are reproducible without a
        // fuzzing dependency; every known tag is forced as the first byte.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let tags = b"BCORYIUDTMxS";
        for round in 0..20_000u64 {
            let len = usize::try_from(next() % 48).unwrap_or(0);
            let mut p: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            if let Some(first) = p.first_mut() {
                *first = tags[usize::try_from(round).unwrap_or(0) % tags.len()];
            }
            let _ = decode(&p);
        }
    }

    #[test]
    fn timestamp_conversion() {
        assert_eq!(pg_timestamp_to_unix_micros(0), 946_684_800_000_000);
        // 2024-01-01T00:00:00Z is 1_704_067_200 s after the Unix epoch.
        let pg = (1_704_067_200 - 946_684_800) * 1_000_000;
        assert_eq!(pg_timestamp_to_unix_micros(pg), 1_704_067_200_000_000);
        assert_eq!(pg_timestamp_to_unix_micros(-946_684_800_000_000), 0);
        assert_eq!(pg_timestamp_to_unix_micros(i64::MAX), i64::MAX);
        assert_eq!(
            pg_timestamp_to_unix_micros(i64::MIN),
            i64::MIN + 946_684_800_000_000
        );
    }
}
