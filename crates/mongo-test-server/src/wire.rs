//! MongoDB wire-protocol framing: parsing requests and encoding replies.
//!
//! Everything here is pure (no I/O) so that it can be fuzzed: `parse_message`
//! must never panic and never allocate more than the input it is given.

use std::fmt;

use bson::{Document, RawBsonRef, RawDocument};

/// Size of the standard message header (length, requestID, responseTo, opCode).
pub const HEADER_LEN: usize = 16;
/// Largest message accepted; the real server advertises 48,000,000 bytes.
pub const MAX_MESSAGE_LEN: usize = 48_000_000;
/// Nesting limit checked before handing bytes to `bson`, whose decoder recurses
/// without a bound and could overflow the stack on hostile input.
pub const MAX_BSON_DEPTH: usize = 200;

pub const OP_REPLY: i32 = 1;
pub const OP_QUERY: i32 = 2004;
pub const OP_COMPRESSED: i32 = 2012;
pub const OP_MSG: i32 = 2013;

/// OP_MSG flag bits.
pub const FLAG_CHECKSUM_PRESENT: u32 = 1;
pub const FLAG_MORE_TO_COME: u32 = 1 << 1;
pub const FLAG_EXHAUST_ALLOWED: u32 = 1 << 16;
/// The low 16 bits are "required": an unknown one set there must be rejected.
const REQUIRED_FLAG_MASK: u32 = 0xFFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub message_length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

/// A `kind 1` section: a named sequence of documents (e.g. `documents` of `insert`).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentSequence {
    pub identifier: String,
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpMsg {
    pub flags: u32,
    pub body: Document,
    pub sequences: Vec<DocumentSequence>,
}

impl OpMsg {
    /// The command document with every document sequence folded in as an array
    /// field, which is how the server logically sees the command.
    pub fn into_command(self) -> Document {
        let mut body = self.body;
        for seq in self.sequences {
            let docs = seq
                .documents
                .into_iter()
                .map(bson::Bson::Document)
                .collect();
            body.insert(seq.identifier, bson::Bson::Array(docs));
        }
        body
    }

    pub fn more_to_come(&self) -> bool {
        self.flags & FLAG_MORE_TO_COME != 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpQuery {
    pub flags: i32,
    pub full_collection_name: String,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    pub query: Document,
    pub return_fields_selector: Option<Document>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpReply {
    pub response_flags: i32,
    pub cursor_id: i64,
    pub starting_from: i32,
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Msg(OpMsg),
    Query(OpQuery),
    /// Only servers send this; parsed so tests and tools can decode replies.
    Reply(OpReply),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a header, or than the header's length field says.
    Truncated,
    /// The length field is below the header size or above `MAX_MESSAGE_LEN`.
    BadLength(i64),
    /// The length field disagrees with the number of bytes given.
    LengthMismatch {
        declared: usize,
        actual: usize,
    },
    UnsupportedOpCode(i32),
    UnknownRequiredFlags(u32),
    ChecksumMismatch,
    Malformed(&'static str),
    Bson(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "message truncated"),
            WireError::BadLength(n) => write!(f, "invalid message length {n}"),
            WireError::LengthMismatch { declared, actual } => {
                write!(f, "message length {declared} but {actual} bytes given")
            }
            WireError::UnsupportedOpCode(op) => write!(f, "unsupported opCode {op}"),
            WireError::UnknownRequiredFlags(bits) => {
                write!(f, "unknown required OP_MSG flag bits {bits:#x}")
            }
            WireError::ChecksumMismatch => write!(f, "OP_MSG checksum mismatch"),
            WireError::Malformed(what) => write!(f, "malformed message: {what}"),
            WireError::Bson(e) => write!(f, "invalid BSON: {e}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Validates the length prefix of a message; the connection reader uses this
/// before allocating a buffer for the rest of the message.
pub fn check_length(raw: i32) -> Result<usize, WireError> {
    let len = usize::try_from(raw).map_err(|_| WireError::BadLength(raw.into()))?;
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(WireError::BadLength(raw.into()));
    }
    Ok(len)
}

/// Parses one complete message (header included). `bytes` must hold exactly
/// the message: its length field must equal `bytes.len()`.
pub fn parse_message(bytes: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader::new(bytes);
    let declared = check_length(r.i32()?)?;
    if declared != bytes.len() {
        return Err(WireError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    let header = Header {
        message_length: declared as i32,
        request_id: r.i32()?,
        response_to: r.i32()?,
        op_code: r.i32()?,
    };
    let body = match header.op_code {
        OP_MSG => Body::Msg(parse_op_msg(bytes)?),
        OP_QUERY => Body::Query(parse_op_query(&mut r)?),
        OP_REPLY => Body::Reply(parse_op_reply(&mut r)?),
        other => return Err(WireError::UnsupportedOpCode(other)),
    };
    Ok(Message { header, body })
}

fn parse_op_msg(bytes: &[u8]) -> Result<OpMsg, WireError> {
    let mut r = Reader::new(bytes);
    r.skip(HEADER_LEN)?;
    let flags = r.u32()?;
    let unknown = flags & REQUIRED_FLAG_MASK & !(FLAG_CHECKSUM_PRESENT | FLAG_MORE_TO_COME);
    if unknown != 0 {
        return Err(WireError::UnknownRequiredFlags(unknown));
    }
    let mut end = bytes.len();
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        end = end.checked_sub(4).ok_or(WireError::Truncated)?;
        if end < HEADER_LEN + 4 {
            return Err(WireError::Truncated);
        }
        let expected =
            u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        if crc32c(&bytes[..end]) != expected {
            return Err(WireError::ChecksumMismatch);
        }
    }
    let mut r = Reader::new(&bytes[..end]);
    r.skip(HEADER_LEN + 4)?;

    let mut body = None;
    let mut sequences = Vec::new();
    while !r.is_empty() {
        match r.u8()? {
            0 => {
                if body.is_some() {
                    return Err(WireError::Malformed("more than one body section"));
                }
                body = Some(r.document()?);
            }
            1 => {
                let size = r.i32()?;
                let size = usize::try_from(size)
                    .ok()
                    .filter(|s| *s >= 4)
                    .ok_or(WireError::Malformed("bad document sequence size"))?;
                let mut seq = Reader::new(r.take(size - 4)?);
                let identifier = seq.cstring()?;
                let mut documents = Vec::new();
                while !seq.is_empty() {
                    documents.push(seq.document()?);
                }
                sequences.push(DocumentSequence {
                    identifier,
                    documents,
                });
            }
            _ => return Err(WireError::Malformed("unknown section kind")),
        }
    }
    let body = body.ok_or(WireError::Malformed("no body section"))?;
    Ok(OpMsg {
        flags,
        body,
        sequences,
    })
}

fn parse_op_query(r: &mut Reader<'_>) -> Result<OpQuery, WireError> {
    let flags = r.i32()?;
    let full_collection_name = r.cstring()?;
    let number_to_skip = r.i32()?;
    let number_to_return = r.i32()?;
    let query = r.document()?;
    let return_fields_selector = if r.is_empty() {
        None
    } else {
        Some(r.document()?)
    };
    if !r.is_empty() {
        return Err(WireError::Malformed("trailing bytes after OP_QUERY"));
    }
    Ok(OpQuery {
        flags,
        full_collection_name,
        number_to_skip,
        number_to_return,
        query,
        return_fields_selector,
    })
}

fn parse_op_reply(r: &mut Reader<'_>) -> Result<OpReply, WireError> {
    let response_flags = r.i32()?;
    let cursor_id = r.i64()?;
    let starting_from = r.i32()?;
    let number_returned = r.i32()?;
    let mut documents = Vec::new();
    while !r.is_empty() {
        documents.push(r.document()?);
    }
    if usize::try_from(number_returned).ok() != Some(documents.len()) {
        return Err(WireError::Malformed("OP_REPLY numberReturned mismatch"));
    }
    Ok(OpReply {
        response_flags,
        cursor_id,
        starting_from,
        documents,
    })
}

/// Encodes an OP_MSG reply with a single body section and no flags.
pub fn encode_op_msg(request_id: i32, response_to: i32, body: &Document) -> Vec<u8> {
    let mut out = header_placeholder(request_id, response_to, OP_MSG);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    write_document(&mut out, body);
    finish(out)
}

/// Encodes an OP_REPLY carrying the given documents (used to answer OP_QUERY).
pub fn encode_op_reply(request_id: i32, response_to: i32, documents: &[Document]) -> Vec<u8> {
    let mut out = header_placeholder(request_id, response_to, OP_REPLY);
    out.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
    out.extend_from_slice(&0i64.to_le_bytes()); // cursorID
    out.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
    out.extend_from_slice(&(documents.len() as i32).to_le_bytes());
    for doc in documents {
        write_document(&mut out, doc);
    }
    finish(out)
}

fn header_placeholder(request_id: i32, response_to: i32, op_code: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&op_code.to_le_bytes());
    out
}

fn write_document(out: &mut Vec<u8>, doc: &Document) {
    // Serializing a `Document` into a Vec only fails for keys containing NUL,
    // which the server never produces; an empty document keeps the frame valid.
    if doc.to_writer(&mut *out).is_err() {
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
    }
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// CRC-32C (Castagnoli), the checksum OP_MSG uses when checksumPresent is set.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// Bounds-checked little-endian cursor over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(self.i32()? as u32)
    }

    fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn cstring(&mut self) -> Result<String, WireError> {
        let nul = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or(WireError::Malformed("unterminated cstring"))?;
        let s = std::str::from_utf8(&self.buf[..nul])
            .map_err(|_| WireError::Malformed("cstring is not UTF-8"))?
            .to_owned();
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    fn document(&mut self) -> Result<Document, WireError> {
        if self.buf.len() < 5 {
            return Err(WireError::Truncated);
        }
        let len = i32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= 5)
            .ok_or(WireError::Malformed("bad BSON document length"))?;
        let bytes = self.take(len)?;
        decode_document(bytes)
    }
}

/// Validates (structure and nesting depth) and then decodes one BSON document.
fn decode_document(bytes: &[u8]) -> Result<Document, WireError> {
    let raw = RawDocument::from_bytes(bytes).map_err(|e| WireError::Bson(e.to_string()))?;
    check_depth(raw, 1)?;
    Document::from_reader(bytes).map_err(|e| WireError::Bson(e.to_string()))
}

fn check_depth(doc: &RawDocument, depth: usize) -> Result<(), WireError> {
    if depth > MAX_BSON_DEPTH {
        return Err(WireError::Malformed("BSON nested too deeply"));
    }
    for elem in doc {
        let (_, value) = elem.map_err(|e| WireError::Bson(e.to_string()))?;
        check_value_depth(value, depth)?;
    }
    Ok(())
}

fn check_value_depth(value: RawBsonRef<'_>, depth: usize) -> Result<(), WireError> {
    match value {
        RawBsonRef::Document(d) => check_depth(d, depth + 1),
        RawBsonRef::Array(a) => {
            if depth + 1 > MAX_BSON_DEPTH {
                return Err(WireError::Malformed("BSON nested too deeply"));
            }
            for v in a {
                check_value_depth(v.map_err(|e| WireError::Bson(e.to_string()))?, depth + 1)?;
            }
            Ok(())
        }
        RawBsonRef::JavaScriptCodeWithScope(c) => check_depth(c.scope, depth + 1),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn op_msg_bytes(flags: u32, sections: &[u8], checksum: bool) -> Vec<u8> {
        let mut out = header_placeholder(7, 0, OP_MSG);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(sections);
        if checksum {
            let len = (out.len() + 4) as i32;
            out[..4].copy_from_slice(&len.to_le_bytes());
            let crc = crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        } else {
            finish(out)
        }
    }

    fn doc_bytes(d: &Document) -> Vec<u8> {
        let mut v = Vec::new();
        d.to_writer(&mut v).unwrap();
        v
    }

    #[test]
    fn round_trips_op_msg_with_sequence_and_checksum() {
        let mut sections = vec![0];
        sections.extend(doc_bytes(&doc! { "insert": "c", "$db": "d" }));
        let mut seq = Vec::new();
        seq.extend_from_slice(b"documents\0");
        seq.extend(doc_bytes(&doc! { "a": 1 }));
        seq.extend(doc_bytes(&doc! { "a": 2 }));
        sections.push(1);
        sections.extend_from_slice(&((seq.len() + 4) as i32).to_le_bytes());
        sections.extend(seq);
        let bytes = op_msg_bytes(FLAG_CHECKSUM_PRESENT, &sections, true);
        let msg = parse_message(&bytes).unwrap();
        let Body::Msg(m) = msg.body else {
            panic!("not OP_MSG")
        };
        assert_eq!(m.sequences[0].documents.len(), 2);
        let cmd = m.into_command();
        assert_eq!(cmd.get_array("documents").unwrap().len(), 2);

        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xFF;
        assert_eq!(parse_message(&corrupt), Err(WireError::ChecksumMismatch));
    }

    #[test]
    fn encoded_replies_parse_back() {
        let body = doc! { "ok": 1.0 };
        let msg = parse_message(&encode_op_msg(1, 2, &body)).unwrap();
        assert_eq!(msg.header.response_to, 2);
        assert_eq!(
            msg.body,
            Body::Msg(OpMsg {
                flags: 0,
                body: body.clone(),
                sequences: vec![]
            })
        );
        let reply = parse_message(&encode_op_reply(3, 4, std::slice::from_ref(&body))).unwrap();
        let Body::Reply(r) = reply.body else {
            panic!("not OP_REPLY")
        };
        assert_eq!(r.documents, vec![body]);
    }

    #[test]
    fn rejects_garbage_and_bad_lengths() {
        assert_eq!(parse_message(&[]), Err(WireError::Truncated));
        assert_eq!(parse_message(&[1, 2, 3]), Err(WireError::Truncated));
        // Length smaller than a header.
        let mut small = vec![0u8; 16];
        small[..4].copy_from_slice(&8i32.to_le_bytes());
        assert_eq!(parse_message(&small), Err(WireError::BadLength(8)));
        // Negative and oversized lengths are refused before anything is allocated.
        let mut neg = vec![0u8; 16];
        neg[..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(parse_message(&neg), Err(WireError::BadLength(-1)));
        assert!(check_length(i32::MAX).is_err());
        assert!(check_length(MAX_MESSAGE_LEN as i32 + 1).is_err());
        assert_eq!(check_length(MAX_MESSAGE_LEN as i32), Ok(MAX_MESSAGE_LEN));
        // Length field disagreeing with the buffer.
        let mut big = encode_op_msg(1, 0, &doc! { "ping": 1 });
        big.push(0);
        assert!(matches!(
            parse_message(&big),
            Err(WireError::LengthMismatch { .. })
        ));
        // Unknown opcodes, including compression which is never advertised.
        let mut compressed = encode_op_msg(1, 0, &doc! {});
        compressed[12..16].copy_from_slice(&OP_COMPRESSED.to_le_bytes());
        assert_eq!(
            parse_message(&compressed),
            Err(WireError::UnsupportedOpCode(OP_COMPRESSED))
        );
        // Unknown required flag bit.
        let mut sections = vec![0];
        sections.extend(doc_bytes(&doc! { "ping": 1 }));
        assert_eq!(
            parse_message(&op_msg_bytes(1 << 5, &sections, false)),
            Err(WireError::UnknownRequiredFlags(1 << 5))
        );
        // Missing body, unknown section kind, document length lies.
        assert!(parse_message(&op_msg_bytes(0, &[], false)).is_err());
        assert!(parse_message(&op_msg_bytes(0, &[9, 1, 2], false)).is_err());
        assert!(parse_message(&op_msg_bytes(0, &[0, 0xff, 0xff, 0xff, 0x7f, 0], false)).is_err());
        assert!(parse_message(&op_msg_bytes(0, &[0, 5, 0, 0, 0, 1], false)).is_err());
    }

    #[test]
    fn survives_pseudo_random_garbage() {
        // Deterministic xorshift so the test is reproducible without a rand crate.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = encode_op_msg(
            1,
            0,
            &doc! { "find": "c", "filter": { "a": [1, { "b": 2 }] } },
        );
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            let flips = (next() % 6) as usize + 1;
            for _ in 0..flips {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            let _ = parse_message(&bytes);
            let _ = parse_message(&bytes[..cut]);
        }
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing() {
        // 10,000 nested single-key documents: {"a": {"a": ...}}.
        let depth = 10_000usize;
        let mut inner = vec![5, 0, 0, 0, 0];
        for _ in 0..depth {
            let mut d = Vec::with_capacity(inner.len() + 8);
            let len = (4 + 1 + 2 + inner.len() + 1) as i32;
            d.extend_from_slice(&len.to_le_bytes());
            d.push(0x03);
            d.extend_from_slice(b"a\0");
            d.extend_from_slice(&inner);
            d.push(0);
            inner = d;
        }
        let mut sections = vec![0];
        sections.extend(inner);
        let bytes = op_msg_bytes(0, &sections, false);
        assert_eq!(
            parse_message(&bytes),
            Err(WireError::Malformed("BSON nested too deeply"))
        );
    }

    #[test]
    fn parses_legacy_op_query() {
        let mut out = header_placeholder(5, 0, OP_QUERY);
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(b"admin.$cmd\0");
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&(-1i32).to_le_bytes());
        out.extend(doc_bytes(&doc! { "isMaster": 1 }));
        let msg = parse_message(&finish(out)).unwrap();
        let Body::Query(q) = msg.body else {
            panic!("not OP_QUERY")
        };
        assert_eq!(q.full_collection_name, "admin.$cmd");
        assert_eq!(q.query, doc! { "isMaster": 1 });
    }

    #[test]
    fn crc32c_known_vector() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
