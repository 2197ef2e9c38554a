//! Binlog positions as saved and resumed: MariaDB's GTID state (`0-1-42`, the last
//! transaction per replication domain), MySQL's executed GTID set
//! (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42`, every transaction ever applied, as intervals
//! per server), or `file:pos`.

use std::collections::BTreeMap;

use mysql_async::Sid;

/// MariaDB's GTID state: per replication domain, the last transaction's server and sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidState(pub BTreeMap<u32, (u32, u64)>);

impl GtidState {
    pub fn parse(text: &str) -> Result<GtidState, String> {
        let mut state = BTreeMap::new();
        for gtid in text
            .split(',')
            .map(str::trim)
            .filter(|gtid| !gtid.is_empty())
        {
            let mut parts = gtid.split('-').map(str::parse::<u64>);
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(Ok(domain)), Some(Ok(server)), Some(Ok(sequence)), None) => {
                    let domain = u32::try_from(domain).map_err(|_| format!("{gtid:?}"))?;
                    let server = u32::try_from(server).map_err(|_| format!("{gtid:?}"))?;
                    state.insert(domain, (server, sequence));
                }
                _ => {
                    return Err(format!(
                        "{gtid:?} is no MariaDB GTID (domain-server-sequence)"
                    ));
                }
            }
        }
        Ok(GtidState(state))
    }
}

impl std::fmt::Display for GtidState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (domain, (server, sequence))) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{domain}-{server}-{sequence}")?;
        }
        Ok(())
    }
}

/// MySQL's GTID set: per source (a server UUID, with its tag on MySQL 8.4+: `uuid:tag`), the
/// transaction numbers applied, as sorted, disjoint, non-adjacent inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet(BTreeMap<String, Vec<(u64, u64)>>);

impl GtidSet {
    /// `uuid:1-5:7,uuid2:tag:1-3`, as `@@gtid_executed` prints it (whitespace and newlines
    /// between the parts are allowed); the UUIDs in any case.
    pub fn parse(text: &str) -> Result<GtidSet, String> {
        let mut set = GtidSet::default();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default();
            if !is_uuid(uuid) {
                return Err(format!("{part:?}: {uuid:?} is no server UUID"));
            }
            let mut source = uuid.to_ascii_lowercase();
            let mut intervals = 0;
            for field in fields {
                if field.starts_with(|c: char| c.is_ascii_digit()) {
                    let (start, end) = field.split_once('-').unwrap_or((field, field));
                    let number = |text: &str| {
                        text.parse::<u64>()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| format!("{part:?}: {field:?} is no interval"))
                    };
                    let (start, end) = (number(start)?, number(end)?);
                    if end < start {
                        return Err(format!("{part:?}: {field:?} ends before it starts"));
                    }
                    set.add_interval(&source, start, end);
                    intervals += 1;
                } else if intervals == 0
                    && !field.is_empty()
                    && field.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                {
                    // A tag (MySQL 8.4): the intervals after it are of `uuid:tag`.
                    source = format!("{}:{field}", uuid.to_ascii_lowercase());
                } else {
                    return Err(format!(
                        "{part:?}: {field:?} is neither a tag nor an interval"
                    ));
                }
            }
            if intervals == 0 {
                return Err(format!("{part:?} has no transaction numbers"));
            }
        }
        Ok(set)
    }

    /// Adds transaction `number` of `source` (`uuid` or `uuid:tag`).
    pub fn add(&mut self, source: &str, number: u64) {
        self.add_interval(source, number, number);
    }

    fn add_interval(&mut self, source: &str, start: u64, end: u64) {
        let intervals = self.0.entry(source.to_string()).or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(start, end) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        *intervals = merged;
    }

    /// Whether transaction `number` of `source` is in the set.
    pub fn contains(&self, source: &str, number: u64) -> bool {
        self.0.get(source).is_some_and(|intervals| {
            intervals
                .iter()
                .any(|&(start, end)| start <= number && number <= end)
        })
    }

    /// The set as COM_BINLOG_DUMP_GTID carries it.
    pub fn sids(&self) -> Result<Vec<Sid<'static>>, String> {
        (self.0.iter())
            .map(|(source, intervals)| {
                let text = std::iter::once(source.clone())
                    .chain(
                        intervals
                            .iter()
                            .map(|(start, end)| format!("{start}-{end}")),
                    )
                    .collect::<Vec<_>>()
                    .join(":");
                text.parse::<Sid<'static>>()
                    .map_err(|error| format!("the GTID set {text}: {error}"))
            })
            .collect()
    }
}

impl std::fmt::Display for GtidSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (source, intervals)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            f.write_str(source)?;
            for &(start, end) in intervals {
                match start == end {
                    true => write!(f, ":{start}")?,
                    false => write!(f, ":{start}-{end}")?,
                }
            }
        }
        Ok(())
    }
}

/// `3e11fa47-71ca-11e1-9e33-c80aa9429562`, in either case.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A MySQL server UUID in its usual spelling.
pub fn uuid(sid: &[u8; 16]) -> String {
    let hex: String = sid.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Where a stream starts or resumes: after a MariaDB GTID state or a MySQL GTID set, or at a
/// file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Gtid(GtidState),
    GtidSet(GtidSet),
    File { file: String, offset: u64 },
}

impl Position {
    /// `binlog.000003:1234`, `0-1-42[,1-2-7]`, or `uuid:1-42[,…]`. An empty text is an empty
    /// MariaDB state (which [`Position::for_mysql`] reads as MySQL's empty set).
    pub fn parse(text: &str) -> Result<Position, String> {
        let text = text.trim();
        if text
            .split(':')
            .next()
            .is_some_and(|first| is_uuid(first.trim()))
        {
            return GtidSet::parse(text).map(Position::GtidSet);
        }
        match text.rsplit_once(':') {
            Some((file, offset)) => Ok(Position::File {
                file: file.to_string(),
                offset: offset
                    .parse()
                    .map_err(|_| format!("{text:?}: the offset after ':' is no number"))?,
            }),
            None => GtidState::parse(text).map(Position::Gtid),
        }
    }

    /// On MySQL an empty position is the empty GTID set (nothing applied yet).
    pub fn for_mysql(self) -> Position {
        match self {
            Position::Gtid(state) if state.0.is_empty() => Position::GtidSet(GtidSet::default()),
            other => other,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Gtid(state) => state.fmt(f),
            Position::GtidSet(set) => set.fmt(f),
            Position::File { file, offset } => write!(f, "{file}:{offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4f22ab58-82db-22f2-af44-d91bb0530673";

    #[test]
    fn positions_read_back_as_written() {
        for text in [
            "0-1-42",
            "0-1-42,1-7-3",
            "binlog.000003:1234",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4f22ab58-82db-22f2-af44-d91bb0530673:3",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:audit:1-2",
        ] {
            assert_eq!(Position::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Position::parse("").unwrap(),
            Position::Gtid(GtidState::default())
        );
        assert_eq!(
            Position::parse("").unwrap().for_mysql(),
            Position::GtidSet(GtidSet::default())
        );
        assert!(Position::parse("0-1").is_err());
        assert!(Position::parse("binlog.000001:x").is_err());
    }

    #[test]
    fn gtid_sets_parse_as_mysql_prints_them() {
        // @@gtid_executed: upper case, a newline after each comma, intervals out of order.
        let text = format!("{}:7-9:1-3,\n{B}:5", A.to_ascii_uppercase());
        let set = GtidSet::parse(&text).unwrap();
        assert_eq!(set.to_string(), format!("{A}:1-3:7-9,{B}:5"));
        assert!(set.contains(A, 2) && set.contains(A, 9) && !set.contains(A, 5));
        for bad in [
            A.to_string(),
            format!("{A}:0"),
            format!("{A}:5-3"),
            format!("{A}:1:Tag:2"),
            "not-a-uuid:1-3".to_string(),
        ] {
            assert!(GtidSet::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn adding_transactions_merges_intervals() {
        let mut set = GtidSet::default();
        set.add(A, 1);
        set.add(A, 2);
        set.add(A, 4);
        assert_eq!(set.to_string(), format!("{A}:1-2:4"));
        set.add(A, 3);
        assert_eq!(set.to_string(), format!("{A}:1-4"));
        set.add(A, 3);
        set.add(&format!("{A}:audit"), 1);
        set.add(B, 10);
        assert_eq!(set.to_string(), format!("{A}:1-4,{A}:audit:1,{B}:10"));
        assert_eq!(GtidSet::parse(&set.to_string()).unwrap(), set);
    }

    #[test]
    fn gtid_sets_go_to_the_server_as_sids() {
        let set = GtidSet::parse(&format!("{A}:1-4:6,{B}:2,{A}:audit:1-2")).unwrap();
        let sids = set.sids().unwrap();
        let printed: Vec<String> = sids.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                format!("{A}:1-4:6"),
                format!("{A}:audit:1-2"),
                format!("{B}:2")
            ]
        );
        assert_eq!(sids[0].intervals().len(), 2);
        assert!(sids[1].tag().is_some());
        assert!(GtidSet::default().sids().unwrap().is_empty());
    }

    #[test]
    fn server_uuids_print_in_their_usual_spelling() {
        let bytes: [u8; 16] = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        assert_eq!(uuid(&bytes), A);
    }
}
