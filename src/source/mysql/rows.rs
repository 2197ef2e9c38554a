//! The row images of a rows event, read against the layout its table map gives: the null
//! bitmap of each image, then each present column's value through `mysql_common`'s value
//! decoder. `mysql_common`'s own row iterator builds a column description (name, database,
//! table, flags, each an allocation) for every column of every row and parses the table
//! map's optional metadata again per row; a table map's layout is read here once.

use std::io;

use bitvec::slice::BitSlice;
use mysql_async::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_common::io::ParseBuf;

/// `binlog_row_value_options` bit of a partial update's after image (MySQL 8).
const PARTIAL_JSON_UPDATES: u64 = 1;

/// How each column of a table map decodes.
#[derive(Debug)]
pub struct RowLayout {
    columns: Vec<ColumnLayout>,
    json_columns: usize,
}

#[derive(Debug)]
struct ColumnLayout {
    column_type: ColumnType,
    meta: Box<[u8]>,
    unsigned: bool,
}

impl RowLayout {
    /// The layout a table map describes; signedness from its optional metadata where the
    /// server wrote it (`binlog_row_metadata`), else signed.
    pub fn of(map: &TableMapEvent<'_>) -> io::Result<Self> {
        let extractor = OptionalMetaExtractor::new(map.iter_optional_meta())?;
        let mut signedness = extractor.iter_signedness();
        let mut columns = Vec::with_capacity(map.columns_count() as usize);
        for index in 0..map.columns_count() as usize {
            let column_type = match map.get_column_type(index) {
                Ok(Some(column_type)) => column_type,
                Ok(None) => return Err(invalid(format!("column {index} has no type"))),
                Err(error) => return Err(invalid(error.to_string())),
            };
            let unsigned = column_type.is_numeric_type() && signedness.next().unwrap_or(false);
            columns.push(ColumnLayout {
                column_type,
                meta: map.get_column_metadata(index).unwrap_or(&[]).into(),
                unsigned,
            });
        }
        Ok(RowLayout {
            columns,
            json_columns: map.json_column_count(),
        })
    }
}

/// The (before, after) images of each row of `event`, each as one value per column of the
/// table (`None` for a column the image leaves out: `binlog_row_image` other than FULL).
pub fn images<'a>(
    layout: &'a RowLayout,
    event: &'a RowsEventData<'a>,
) -> impl Iterator<Item = io::Result<(Option<Image<'a>>, Option<Image<'a>>)>> + 'a {
    let partial = matches!(event, RowsEventData::PartialUpdateRowsEvent(_));
    let before = event.columns_before_image();
    let after = event.columns_after_image();
    let mut buf = ParseBuf(event.rows_data());
    let mut failed = false;
    std::iter::from_fn(move || {
        if buf.is_empty() || failed {
            return None;
        }
        let mut read = || -> io::Result<_> {
            let before = before
                .map(|present| image(layout, present, false, &mut buf))
                .transpose()?;
            let after = after
                .map(|present| image(layout, present, partial, &mut buf))
                .transpose()?;
            Ok((before, after))
        };
        let images = read();
        failed = images.is_err();
        Some(images)
    })
}

/// One row image: a value per column of the table.
pub type Image<'a> = Vec<Option<BinlogValue<'a>>>;

fn image<'a>(
    layout: &'a RowLayout,
    present: &BitSlice<u8>,
    shared_image: bool,
    buf: &mut ParseBuf<'a>,
) -> io::Result<Image<'a>> {
    // A partial update's after image starts with its value options (WL#2955) and, under
    // PARTIAL_JSON, a bitmap of the JSON columns that hold a diff instead of a value.
    let partial_json: Option<&[u8]> = if shared_image {
        let options = buf
            .checked_eat_lenenc_int()
            .ok_or_else(|| invalid("a partial image ends early"))?;
        match options & PARTIAL_JSON_UPDATES {
            0 => None,
            _ => Some(take(buf, layout.json_columns.div_ceil(8))?),
        }
    } else {
        None
    };
    let present_count = present.count_ones();
    let nulls = BitSlice::<u8>::from_slice(take(buf, present_count.div_ceil(8))?);
    let mut values = Vec::with_capacity(layout.columns.len());
    let (mut in_image, mut json_index) = (0, 0);
    for (index, column) in layout.columns.iter().enumerate() {
        let is_json = column.column_type == ColumnType::MYSQL_TYPE_JSON;
        let is_partial = is_json
            && partial_json.is_some_and(|bits| {
                BitSlice::<u8>::from_slice(bits)
                    .get(json_index)
                    .is_some_and(|bit| *bit)
            });
        json_index += usize::from(is_json);
        if !present.get(index).is_some_and(|bit| *bit) {
            values.push(None);
            continue;
        }
        let null = nulls.get(in_image).is_none_or(|bit| *bit);
        in_image += 1;
        values.push(Some(match null {
            true => BinlogValue::Value(mysql_async::Value::NULL),
            false => buf.parse::<BinlogValue<'a>>((
                column.column_type,
                &column.meta,
                column.unsigned,
                is_partial,
            ))?,
        }));
    }
    Ok(values)
}

fn take<'a>(buf: &mut ParseBuf<'a>, length: usize) -> io::Result<&'a [u8]> {
    buf.checked_eat(length)
        .ok_or_else(|| invalid("a row image ends early"))
}

fn invalid(text: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::Value as MyValue;

    /// `id INT, name VARCHAR(20), qty INT UNSIGNED`.
    fn layout() -> RowLayout {
        let column = |column_type, meta: &[u8], unsigned| ColumnLayout {
            column_type,
            meta: meta.into(),
            unsigned,
        };
        RowLayout {
            columns: vec![
                column(ColumnType::MYSQL_TYPE_LONG, &[], false),
                column(ColumnType::MYSQL_TYPE_VARCHAR, &[20, 0], false),
                column(ColumnType::MYSQL_TYPE_LONG, &[], true),
            ],
            json_columns: 0,
        }
    }

    fn values(image: Image<'_>) -> Vec<Option<MyValue>> {
        (image.into_iter())
            .map(|value| {
                value.map(|value| match value {
                    BinlogValue::Value(value) => value,
                    other => panic!("not a plain value: {other:?}"),
                })
            })
            .collect()
    }

    #[test]
    fn an_image_reads_its_null_bitmap_then_each_present_column() {
        let layout = layout();
        let all = [0b111u8];
        // Null bitmap: the second column is NULL; then id = -2 and qty = 4294967295.
        let bytes = [0b010, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let mut buf = ParseBuf(&bytes);
        let image = image(&layout, BitSlice::from_slice(&all), false, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(
            values(image),
            [
                Some(MyValue::Int(-2)),
                Some(MyValue::NULL),
                Some(MyValue::Int(i64::from(u32::MAX)))
            ]
        );
    }

    #[test]
    fn columns_an_image_leaves_out_are_none_and_take_no_bytes() {
        let layout = layout();
        // Only the first two columns are in the image; name = "ab".
        let present = [0b011u8];
        let bytes = [0b00, 7, 0, 0, 0, 2, b'a', b'b'];
        let mut buf = ParseBuf(&bytes);
        let image = image(&layout, BitSlice::from_slice(&present), false, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(
            values(image),
            [
                Some(MyValue::Int(7)),
                Some(MyValue::Bytes(b"ab".to_vec())),
                None
            ]
        );
    }

    #[test]
    fn a_partial_updates_after_image_skips_its_value_options() {
        let layout = layout();
        let all = [0b111u8];
        // Value options 0 (no JSON diffs), then an image of three NULLs.
        let bytes = [0, 0b111];
        let mut buf = ParseBuf(&bytes);
        let image = image(&layout, BitSlice::from_slice(&all), true, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(values(image), vec![Some(MyValue::NULL); 3]);
    }

    #[test]
    fn a_truncated_image_is_an_error() {
        let layout = layout();
        let all = [0b111u8];
        for length in 0..9 {
            let bytes = [0b000, 1, 0, 0, 0, 1, b'a', 3, 0];
            let mut buf = ParseBuf(&bytes[..length]);
            let result = image(&layout, BitSlice::from_slice(&all), false, &mut buf);
            assert!(result.is_err(), "{length} bytes");
        }
    }
}
